//! Stream positions and the tokens clients hold.
//!
//! A token names a *point between* events: every event with a position at or
//! below the token is before the point. `/sync` returns the highest position it
//! has read; paging backwards from a point reads positions at or below it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The total order in which the server persisted events.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct StreamPosition(pub i64);

impl StreamPosition {
    pub const ZERO: StreamPosition = StreamPosition(0);

    /// Before every event of every room, history fetched from other
    /// servers included: that sits below zero.
    pub const BEFORE_ALL: StreamPosition = StreamPosition(i64::MIN);

    /// The point just before this event.
    pub fn before(self) -> StreamPosition {
        StreamPosition(self.0 - 1)
    }
}

impl fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A `since`, `next_batch`, `prev_batch`, `from` or `to` token.
///
/// The text form is `s<events>`; the prefix leaves room for more streams
/// (to-device, receipts) without breaking tokens handed out earlier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamToken {
    pub events: StreamPosition,
}

impl StreamToken {
    pub fn at(events: StreamPosition) -> Self {
        StreamToken { events }
    }
}

impl fmt::Display for StreamToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.events.0)
    }
}

/// A token that this server did not hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenParseError(pub String);

impl fmt::Display for TokenParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid stream token {:?}", self.0)
    }
}

impl std::error::Error for TokenParseError {}

impl FromStr for StreamToken {
    type Err = TokenParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let first_stream = text.split('_').next().unwrap_or_default();
        let digits = first_stream
            .strip_prefix('s')
            .ok_or_else(|| TokenParseError(text.to_owned()))?;
        // Below zero lies history fetched from other servers, which paging
        // back through a room reaches.
        let events: i64 = digits
            .parse()
            .map_err(|_| TokenParseError(text.to_owned()))?;
        Ok(StreamToken::at(StreamPosition(events)))
    }
}

/// A `/sync` `since` or `next_batch`: one position per stream, so each
/// stream delivers its changes exactly once whatever the others did.
///
/// The text form is
/// `s<events>_<account data>_<receipts>_<typing>_<presence>_<to-device>_<device lists>`.
/// The first part alone is a [`StreamToken`], so `/messages` takes a sync
/// token as `from`; parts missing at the end read as zero, so tokens from
/// before a stream existed stay valid, and parts after the known ones are
/// ignored, so an older process reads a newer one's tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SyncToken {
    pub events: StreamPosition,
    pub account_data: StreamPosition,
    pub receipts: StreamPosition,
    pub typing: StreamPosition,
    pub presence: StreamPosition,
    pub to_device: StreamPosition,
    pub device_lists: StreamPosition,
}

impl SyncToken {
    fn parts(&self) -> [StreamPosition; 7] {
        [
            self.events,
            self.account_data,
            self.receipts,
            self.typing,
            self.presence,
            self.to_device,
            self.device_lists,
        ]
    }
}

impl fmt::Display for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.parts().iter().map(|p| p.0.to_string()).collect();
        write!(f, "s{}", parts.join("_"))
    }
}

impl FromStr for SyncToken {
    type Err = TokenParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || TokenParseError(text.to_owned());
        let digits = text.strip_prefix('s').ok_or_else(invalid)?;
        let mut positions = [StreamPosition::ZERO; 7];
        for (n, part) in digits.split('_').enumerate() {
            let value: i64 = part.parse().map_err(|_| invalid())?;
            if value < 0 {
                return Err(invalid());
            }
            if let Some(slot) = positions.get_mut(n) {
                *slot = StreamPosition(value);
            }
        }
        let [
            events,
            account_data,
            receipts,
            typing,
            presence,
            to_device,
            device_lists,
        ] = positions;
        Ok(SyncToken {
            events,
            account_data,
            receipts,
            typing,
            presence,
            to_device,
            device_lists,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_tokens_round_trip_and_read_older_and_newer_forms() {
        let token = SyncToken {
            events: StreamPosition(42),
            account_data: StreamPosition(3),
            receipts: StreamPosition(7),
            typing: StreamPosition(1_700_000_000_000),
            presence: StreamPosition(9),
            to_device: StreamPosition(11),
            device_lists: StreamPosition(12),
        };
        let text = token.to_string();
        assert_eq!(text, "s42_3_7_1700000000000_9_11_12");
        assert_eq!(text.parse::<SyncToken>(), Ok(token));
        let older: SyncToken = "s42".parse().expect("an events-only token");
        assert_eq!(older.events, StreamPosition(42));
        assert_eq!(older.receipts, StreamPosition::ZERO);
        let newer: SyncToken = format!("{text}_5_6").parse().expect("a longer token");
        assert_eq!(newer, token);
        assert_eq!(
            text.parse::<StreamToken>(),
            Ok(StreamToken::at(StreamPosition(42)))
        );
        for bad in ["", "42", "s", "s1__2", "s1_-2", "s1_x", "t1_2"] {
            assert!(bad.parse::<SyncToken>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn token_round_trips() {
        let token = StreamToken::at(StreamPosition(42));
        assert_eq!(token.to_string(), "s42");
        assert_eq!("s42".parse::<StreamToken>(), Ok(token));
    }

    #[test]
    fn foreign_tokens_are_rejected() {
        assert_eq!(
            "s-7".parse::<StreamToken>(),
            Ok(StreamToken::at(StreamPosition(-7)))
        );
        for bad in ["", "42", "t42", "s", "s-", "sabc"] {
            assert!(bad.parse::<StreamToken>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn before_is_one_lower() {
        assert_eq!(StreamPosition(5).before(), StreamPosition(4));
    }
}
