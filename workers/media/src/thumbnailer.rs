//! Making thumbnails: the size a request gets, and the scaling itself.
//!
//! `scale` keeps the aspect ratio and the whole image, at the smallest size
//! that still covers the requested box on both sides (one side matches it,
//! the other may be larger: the spec asks for no thumbnail smaller than
//! requested); `crop` scales the same way and cuts the overflow off the
//! middle. Images are never enlarged: an image that fits the box, or that
//! could only cover it by growing, is served as it is by `scale`.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Larger pictures are refused rather than decoded (decompression bombs).
const MAX_SIDE: u32 = 16_384;
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
const JPEG_QUALITY: u8 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Scale,
    Crop,
}

impl Method {
    pub(crate) fn parse(text: &str) -> Option<Method> {
        match text {
            "scale" => Some(Method::Scale),
            "crop" => Some(Method::Crop),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Scale => "scale",
            Method::Crop => "crop",
        }
    }
}

/// What to do with an image of a given size for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The image already fits: serve the original.
    Original,
    /// Resize to `scaled`, then keep the centred `width` x `height`.
    Resize {
        scaled: (u32, u32),
        width: u32,
        height: u32,
    },
}

/// The thumbnail geometry for an `original` image and a `requested` box.
pub(crate) fn plan(original: (u32, u32), requested: (u32, u32), method: Method) -> Plan {
    let (original_width, original_height) = original;
    let (requested_width, requested_height) = (requested.0.max(1), requested.1.max(1));
    if original_width <= requested_width && original_height <= requested_height {
        return Plan::Original;
    }
    let width_ratio = f64::from(requested_width) / f64::from(original_width);
    let height_ratio = f64::from(requested_height) / f64::from(original_height);
    // Both methods cover the box; only `crop` then cuts down to it.
    let factor = width_ratio.max(height_ratio);
    if factor >= 1.0 && method == Method::Scale {
        return Plan::Original;
    }
    let factor = factor.min(1.0);
    let scale = |side: u32| ((f64::from(side) * factor).round() as u32).clamp(1, side);
    let scaled = (scale(original_width), scale(original_height));
    match method {
        Method::Scale => Plan::Resize {
            scaled,
            width: scaled.0,
            height: scaled.1,
        },
        Method::Crop => Plan::Resize {
            scaled,
            width: scaled.0.min(requested_width),
            height: scaled.1.min(requested_height),
        },
    }
}

/// Why no thumbnail came out.
#[derive(Debug)]
pub(crate) enum ThumbnailError {
    /// The bytes are no image we read.
    Unreadable(String),
    /// The image is larger than we decode.
    TooLarge,
}

/// A made thumbnail, or word to serve the original.
pub(crate) enum Thumbnail {
    Original,
    Made {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

/// The image types we can read and thumbnail.
pub(crate) fn can_thumbnail(content_type: &str) -> bool {
    matches!(
        crate::headers::essence(content_type).as_str(),
        "image/png" | "image/jpeg" | "image/jpg" | "image/gif" | "image/webp"
    )
}

/// Decodes, scales and encodes; CPU-bound, so callers run it on a blocking
/// thread. JPEG stays JPEG; everything else becomes PNG (the first frame of
/// an animation: no animated thumbnails yet).
pub(crate) fn make(
    bytes: &[u8],
    requested: (u32, u32),
    method: Method,
) -> Result<Thumbnail, ThumbnailError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|error| ThumbnailError::Unreadable(error.to_string()))?;
    let format = reader.format();
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|error| match error {
        image::ImageError::Limits(_) => ThumbnailError::TooLarge,
        other => ThumbnailError::Unreadable(other.to_string()),
    })?;
    let Plan::Resize {
        scaled,
        width,
        height,
    } = plan((image.width(), image.height()), requested, method)
    else {
        return Ok(Thumbnail::Original);
    };
    let resized = image.resize_exact(scaled.0, scaled.1, FilterType::Triangle);
    let cropped = resized.crop_imm(
        (scaled.0 - width) / 2,
        (scaled.1 - height) / 2,
        width,
        height,
    );
    encode(&cropped, format == Some(ImageFormat::Jpeg))
}

fn encode(image: &DynamicImage, as_jpeg: bool) -> Result<Thumbnail, ThumbnailError> {
    let mut out = Cursor::new(Vec::new());
    let unreadable = |error: image::ImageError| ThumbnailError::Unreadable(error.to_string());
    if as_jpeg {
        let encoder = JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
        DynamicImage::ImageRgb8(image.to_rgb8())
            .write_with_encoder(encoder)
            .map_err(unreadable)?;
        Ok(Thumbnail::Made {
            bytes: out.into_inner(),
            content_type: "image/jpeg",
        })
    } else {
        image
            .write_to(&mut out, ImageFormat::Png)
            .map_err(unreadable)?;
        Ok(Thumbnail::Made {
            bytes: out.into_inner(),
            content_type: "image/png",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resize(scaled: (u32, u32), width: u32, height: u32) -> Plan {
        Plan::Resize {
            scaled,
            width,
            height,
        }
    }

    #[test]
    fn scale_covers_the_box_keeping_the_aspect_ratio() {
        assert_eq!(
            plan((640, 480), (64, 64), Method::Scale),
            resize((85, 64), 85, 64)
        );
        assert_eq!(
            plan((640, 480), (320, 320), Method::Scale),
            resize((427, 320), 427, 320)
        );
        assert_eq!(
            plan((640, 480), (320, 100), Method::Scale),
            resize((320, 240), 320, 240)
        );
        assert_eq!(
            plan((400, 1000), (100, 100), Method::Scale),
            resize((100, 250), 100, 250)
        );
        assert_eq!(
            plan((1000, 3), (100, 100), Method::Scale),
            Plan::Original,
            "covering the box would enlarge the image"
        );
        assert_eq!(
            plan((100_000, 3), (1, 1), Method::Scale),
            resize((33_333, 1), 33_333, 1),
            "a side never shrinks to zero"
        );
    }

    #[test]
    fn crop_fills_the_box_and_cuts_the_rest() {
        assert_eq!(
            plan((640, 480), (96, 96), Method::Crop),
            resize((128, 96), 96, 96)
        );
        assert_eq!(
            plan((300, 900), (100, 200), Method::Crop),
            resize((100, 300), 100, 200)
        );
    }

    #[test]
    fn nothing_is_ever_enlarged() {
        assert_eq!(plan((50, 40), (96, 96), Method::Crop), Plan::Original);
        assert_eq!(plan((96, 96), (96, 96), Method::Scale), Plan::Original);
        // Wider than the box but not as tall: cropped to the box's width, never stretched.
        assert_eq!(
            plan((200, 50), (96, 96), Method::Crop),
            resize((200, 50), 96, 50)
        );
        assert_eq!(plan((10, 10), (0, 0), Method::Scale), resize((1, 1), 1, 1));
        assert_eq!(plan((200, 50), (96, 96), Method::Scale), Plan::Original);
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgba8(image)
            .write_to(&mut out, ImageFormat::Png)
            .expect("encode");
        out.into_inner()
    }

    fn dimensions(bytes: &[u8]) -> (u32, u32) {
        let image = image::load_from_memory(bytes).expect("decode the thumbnail");
        (image.width(), image.height())
    }

    #[test]
    fn thumbnails_come_out_at_the_planned_size() {
        let source = png(300, 200);
        let Ok(Thumbnail::Made {
            bytes,
            content_type,
        }) = make(&source, (150, 150), Method::Scale)
        else {
            panic!("no thumbnail made");
        };
        assert_eq!(content_type, "image/png");
        assert_eq!(dimensions(&bytes), (225, 150));
        let Ok(Thumbnail::Made { bytes, .. }) = make(&source, (64, 64), Method::Crop) else {
            panic!("no thumbnail made");
        };
        assert_eq!(dimensions(&bytes), (64, 64));
        assert!(matches!(
            make(&source, (800, 600), Method::Scale),
            Ok(Thumbnail::Original)
        ));
    }

    #[test]
    fn what_is_not_an_image_is_unreadable() {
        assert!(matches!(
            make(b"plain text, not pixels", (32, 32), Method::Crop),
            Err(ThumbnailError::Unreadable(_))
        ));
        assert!(can_thumbnail("image/PNG"));
        assert!(!can_thumbnail("image/svg+xml"));
        assert!(!can_thumbnail("text/plain"));
    }
}
