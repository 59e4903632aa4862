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

/// A point between two events of one room's timeline, in the order paging
/// reads it. An event's place is `(slot, position)`: live events, and
/// history fetched from before a room's oldest event, have their position
/// as slot; history fetched into a gap later takes the slot of the event
/// just after the gap, and positions below zero, so it sorts there, oldest
/// first. The point an event names is the one just after it: every event
/// whose place is at or below the point is before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimelinePoint {
    pub slot: StreamPosition,
    pub position: StreamPosition,
}

impl TimelinePoint {
    /// Before every event of every room.
    pub const BEFORE_ALL: TimelinePoint = TimelinePoint {
        slot: StreamPosition::BEFORE_ALL,
        position: StreamPosition::BEFORE_ALL,
    };
    /// After every event of every room.
    pub const AFTER_ALL: TimelinePoint = TimelinePoint {
        slot: StreamPosition(i64::MAX),
        position: StreamPosition(i64::MAX),
    };

    /// The point just after the event at this place.
    pub const fn after_event(slot: StreamPosition, position: StreamPosition) -> Self {
        TimelinePoint { slot, position }
    }

    /// The point a stream token names: after every live event at or below
    /// it, and after any history fetched into the gap just before the next
    /// one, which was there before it.
    pub fn of_stream(at: StreamPosition) -> Self {
        TimelinePoint {
            slot: StreamPosition(at.0.saturating_add(1)),
            position: at,
        }
    }

    /// The point just before the event this point is just after.
    pub fn before(self) -> Self {
        TimelinePoint {
            slot: self.slot,
            position: self.position.before(),
        }
    }

    /// The stream position a live reader would stop at for this point: the
    /// live events at or below it are those at or below the result.
    pub fn stream_position(self) -> StreamPosition {
        if self.position.0 >= self.slot.0 {
            self.slot
        } else {
            self.slot.before()
        }
    }
}

/// The text form is `s<position>` where the point is what a stream token
/// names, else `t<slot>_<position>`: tokens handed out before gaps existed
/// keep their meaning.
impl fmt::Display for TimelinePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == TimelinePoint::of_stream(self.position) {
            write!(f, "s{}", self.position.0)
        } else {
            write!(f, "t{}_{}", self.slot.0, self.position.0)
        }
    }
}

impl FromStr for TimelinePoint {
    type Err = TokenParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || TokenParseError(text.to_owned());
        if let Some(rest) = text.strip_prefix('t') {
            let (slot, position) = rest.split_once('_').ok_or_else(invalid)?;
            let slot: i64 = slot.parse().map_err(|_| invalid())?;
            let position: i64 = position.parse().map_err(|_| invalid())?;
            return Ok(TimelinePoint::after_event(
                StreamPosition(slot),
                StreamPosition(position),
            ));
        }
        let token: StreamToken = text.parse()?;
        Ok(TimelinePoint::of_stream(token.events))
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
    fn timeline_points_order_gaps_before_the_event_after_them() {
        let live = |p: i64| TimelinePoint::after_event(StreamPosition(p), StreamPosition(p));
        let gap =
            |slot: i64, p: i64| TimelinePoint::after_event(StreamPosition(slot), StreamPosition(p));
        // Live 4, then the gap hung before 5 (oldest first), then live 5.
        let order = [live(4), gap(5, -9), gap(5, -3), live(5)];
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]));
        // A stream token at 4 is after the gap, before live 5.
        let token = TimelinePoint::of_stream(StreamPosition(4));
        assert!(gap(5, -3) <= token && live(5) > token);
        // The point before live 5 is the stream token at 4, and prints so.
        assert_eq!(live(5).before(), token);
        assert_eq!(token.to_string(), "s4");
        assert_eq!(live(5).to_string(), "t5_5");
        assert_eq!(gap(5, -9).before().to_string(), "t5_-10");
        for point in [token, live(5), gap(5, -10), TimelinePoint::BEFORE_ALL] {
            assert_eq!(point.to_string().parse::<TimelinePoint>(), Ok(point));
        }
        for bad in ["t5", "t_5", "tx_1", "t1_y", "5", "s"] {
            assert!(bad.parse::<TimelinePoint>().is_err(), "{bad} parsed");
        }
        assert_eq!(token.stream_position(), StreamPosition(4));
        assert_eq!(live(5).stream_position(), StreamPosition(5));
        assert_eq!(gap(5, -3).stream_position(), StreamPosition(4));
    }

    #[test]
    fn before_is_one_lower() {
        assert_eq!(StreamPosition(5).before(), StreamPosition(4));
    }
}
