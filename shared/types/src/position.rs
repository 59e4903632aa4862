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
        let events: i64 = digits
            .parse()
            .map_err(|_| TokenParseError(text.to_owned()))?;
        if events < 0 {
            return Err(TokenParseError(text.to_owned()));
        }
        Ok(StreamToken::at(StreamPosition(events)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let token = StreamToken::at(StreamPosition(42));
        assert_eq!(token.to_string(), "s42");
        assert_eq!("s42".parse::<StreamToken>(), Ok(token));
    }

    #[test]
    fn foreign_tokens_are_rejected() {
        for bad in ["", "42", "t42", "s", "s-1", "sabc"] {
            assert!(bad.parse::<StreamToken>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn before_is_one_lower() {
        assert_eq!(StreamPosition(5).before(), StreamPosition(4));
    }
}
