//! History visibility: which events of a room one user may see. The rule is
//! judged at each event's place in the timeline (history fetched into a gap
//! sits in the gap, see [`TimelinePoint`]), with the room's
//! `m.room.history_visibility` and the user's membership as they were
//! there, never as they are now.
//!
//! - `world_readable`: anyone.
//! - a member joined at the event: yes, whatever the setting.
//! - `invited`: also a user invited at the event.
//! - `shared`: also a user who joined at some point after the event.
//! - `joined`: nobody else.
//!
//! A change of the setting is itself judged by the more open of the old and
//! new values, and a user's own membership event by the more joined of
//! their membership before and after it, so members see their own invite,
//! join and leave.

use crate::pdu::content_text;
use myelin_store::{EventStore, StoreResult, StoredEvent};
use myelin_types::TimelinePoint;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::events::room::member::MembershipState;

const MEMBER: &str = "m.room.member";
const HISTORY_VISIBILITY: &str = "m.room.history_visibility";

/// One user's view of one room's history: their membership changes and the
/// room's visibility changes, each oldest first.
#[derive(Debug, Clone)]
pub struct HistoryView {
    user_id: String,
    memberships: Vec<(TimelinePoint, MembershipState)>,
    visibilities: Vec<(TimelinePoint, HistoryVisibility)>,
    /// The setting in force below the oldest change read: the one before
    /// the oldest history fetched from another server, else `shared`.
    visibility_below: HistoryVisibility,
}

impl HistoryView {
    /// Reads what the rule needs: the user's member events in the room and
    /// the room's visibility changes.
    pub async fn load(
        store: &dyn EventStore,
        room_id: &str,
        user_id: &str,
    ) -> StoreResult<HistoryView> {
        let memberships = store
            .state_history(room_id, MEMBER, user_id)
            .await?
            .iter()
            .map(|event| (event.point(), membership_in(&event.pdu_json)))
            .collect();
        let visibilities = store
            .state_history(room_id, HISTORY_VISIBILITY, "")
            .await?
            .iter()
            .map(|event| (event.point(), visibility_in(&event.pdu_json)))
            .collect();
        let mut view = HistoryView::new(user_id, memberships, visibilities);
        if let Some(below) = store
            .room(room_id)
            .await?
            .and_then(|room| room.visibility_below)
        {
            view.visibility_below = visibility_named(Some(&below));
        }
        Ok(view)
    }

    /// The changes in any order: they are judged in timeline order (the
    /// store reads them by position, and history fetched into a gap has
    /// positions below zero).
    pub fn new(
        user_id: &str,
        mut memberships: Vec<(TimelinePoint, MembershipState)>,
        mut visibilities: Vec<(TimelinePoint, HistoryVisibility)>,
    ) -> HistoryView {
        memberships.sort_by_key(|(point, _)| *point);
        visibilities.sort_by_key(|(point, _)| *point);
        HistoryView {
            user_id: user_id.to_owned(),
            memberships,
            visibilities,
            visibility_below: HistoryVisibility::Shared,
        }
    }

    /// Whether the user may see this event of the room.
    pub fn may_see(&self, event: &StoredEvent) -> bool {
        let point = event.point();
        let visibility = more_open(
            self.visibility_at(point.before()),
            self.visibility_at(point),
        );
        let own_membership_event =
            event.event_type == MEMBER && event.state_key.as_deref() == Some(&self.user_id);
        let membership = if own_membership_event {
            more_joined(
                self.membership_at(point.before()),
                self.membership_at(point),
            )
        } else {
            self.membership_at(point)
        };
        if visibility == HistoryVisibility::WorldReadable || membership == MembershipState::Join {
            return true;
        }
        match visibility {
            HistoryVisibility::Invited => membership == MembershipState::Invite,
            HistoryVisibility::Shared => self.joined_after(point),
            _ => false,
        }
    }

    /// Where the user may see the room's ordinary events, those judged by
    /// the setting and membership around them alone (all but the user's
    /// own member events and visibility changes, about which the ranges
    /// say nothing): half-open ranges `(after, upto]`, oldest first, `upto`
    /// `None` for "to the end". Lets a store query ask for visible events
    /// only, so a count of them tells nothing of the others.
    pub fn visible_ranges(&self) -> Vec<(TimelinePoint, Option<TimelinePoint>)> {
        let mut changes: Vec<TimelinePoint> = self
            .memberships
            .iter()
            .map(|(at, _)| *at)
            .chain(self.visibilities.iter().map(|(at, _)| *at))
            .collect();
        changes.sort_unstable();
        changes.dedup();
        let starts = std::iter::once(TimelinePoint::BEFORE_ALL).chain(changes.iter().copied());
        let mut ranges: Vec<(TimelinePoint, Option<TimelinePoint>)> = Vec::new();
        for (index, start) in starts.enumerate() {
            // Between two changes nothing the rule looks at moves.
            let end = changes.get(index).copied().filter(|end| *end > start);
            let visibility = self.visibility_at(start);
            let membership = self.membership_at(start);
            let visible = visibility == HistoryVisibility::WorldReadable
                || membership == MembershipState::Join
                || match visibility {
                    HistoryVisibility::Invited => membership == MembershipState::Invite,
                    HistoryVisibility::Shared => self.joined_after(start),
                    _ => false,
                };
            if !visible {
                continue;
            }
            match ranges.last_mut() {
                Some((_, upto)) if *upto == Some(start) => *upto = end,
                _ => ranges.push((start, end)),
            }
        }
        ranges
    }

    /// Whether the room is readable by anyone now (peeking).
    pub fn world_readable_now(&self) -> bool {
        self.visibilities
            .last()
            .is_some_and(|(_, visibility)| *visibility == HistoryVisibility::WorldReadable)
    }

    /// The setting in force at point `at`; below every change read,
    /// the one before the oldest fetched history (`shared` when none).
    fn visibility_at(&self, at: TimelinePoint) -> HistoryVisibility {
        latest_at(&self.visibilities, at)
            .cloned()
            .unwrap_or_else(|| self.visibility_below.clone())
    }

    /// The user's membership at point `at`; `leave` before any.
    fn membership_at(&self, at: TimelinePoint) -> MembershipState {
        latest_at(&self.memberships, at)
            .cloned()
            .unwrap_or(MembershipState::Leave)
    }

    fn joined_after(&self, point: TimelinePoint) -> bool {
        self.memberships
            .iter()
            .any(|(at, membership)| *at > point && *membership == MembershipState::Join)
    }
}

/// The value of the newest change at or below `at`.
fn latest_at<T>(changes: &[(TimelinePoint, T)], at: TimelinePoint) -> Option<&T> {
    let after = changes.partition_point(|(point, _)| *point <= at);
    after.checked_sub(1).map(|index| &changes[index].1)
}

fn visibility_rank(visibility: &HistoryVisibility) -> u8 {
    match visibility {
        HistoryVisibility::WorldReadable => 3,
        HistoryVisibility::Shared => 2,
        HistoryVisibility::Invited => 1,
        _ => 0,
    }
}

fn more_open(a: HistoryVisibility, b: HistoryVisibility) -> HistoryVisibility {
    if visibility_rank(&b) > visibility_rank(&a) {
        b
    } else {
        a
    }
}

fn membership_rank(membership: &MembershipState) -> u8 {
    match membership {
        MembershipState::Join => 4,
        MembershipState::Invite => 3,
        MembershipState::Knock => 2,
        MembershipState::Leave => 1,
        _ => 0,
    }
}

fn more_joined(a: MembershipState, b: MembershipState) -> MembershipState {
    if membership_rank(&b) > membership_rank(&a) {
        b
    } else {
        a
    }
}

/// `content.membership` of a member event; anything unreadable counts as
/// `leave`, which shows the least.
fn membership_in(pdu_json: &str) -> MembershipState {
    match content_text(pdu_json, "membership") {
        Some(value) => MembershipState::from(value.as_str()),
        None => MembershipState::Leave,
    }
}

/// `content.history_visibility`; an unknown or missing value counts as
/// `joined`, the most private.
fn visibility_in(pdu_json: &str) -> HistoryVisibility {
    visibility_named(content_text(pdu_json, "history_visibility").as_deref())
}

/// A setting by name; a name the spec does not know is read as the
/// strictest.
fn visibility_named(name: Option<&str>) -> HistoryVisibility {
    match name.map(HistoryVisibility::from) {
        Some(
            known @ (HistoryVisibility::WorldReadable
            | HistoryVisibility::Shared
            | HistoryVisibility::Invited
            | HistoryVisibility::Joined),
        ) => known,
        _ => HistoryVisibility::Joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_types::StreamPosition;

    const ME: &str = "@me:hs";

    fn event(position: i64, event_type: &str, state_key: Option<&str>) -> StoredEvent {
        StoredEvent {
            position: StreamPosition(position),
            slot: StreamPosition(position),
            opens_gap: false,
            event_id: format!("$e{position}"),
            room_id: "!r:hs".to_owned(),
            sender: "@other:hs".to_owned(),
            event_type: event_type.to_owned(),
            state_key: state_key.map(str::to_owned),
            depth: position,
            origin_server_ts: position,
            pdu_json: "{}".to_owned(),
            txn: None,
            redacted_by: None,
            redaction_pdu_json: None,
        }
    }

    fn live(position: i64) -> TimelinePoint {
        TimelinePoint::after_event(StreamPosition(position), StreamPosition(position))
    }

    fn message(position: i64) -> StoredEvent {
        event(position, "m.room.message", None)
    }

    fn view(
        memberships: &[(i64, MembershipState)],
        visibilities: &[(i64, HistoryVisibility)],
    ) -> HistoryView {
        HistoryView::new(
            ME,
            memberships
                .iter()
                .map(|(at, m)| (live(*at), m.clone()))
                .collect(),
            visibilities
                .iter()
                .map(|(at, v)| (live(*at), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn fetched_history_is_judged_by_the_setting_below_it() {
        // Joined at 20 on a `shared` setting; history fetched later sits
        // below zero, with a change to `shared` at -5 and `joined` before.
        let mut me = view(
            &[(20, MembershipState::Join)],
            &[
                (-5, HistoryVisibility::Shared),
                (15, HistoryVisibility::Shared),
            ],
        );
        me.visibility_below = visibility_named(Some("joined"));
        assert!(!me.may_see(&message(-8)), "before the change to shared");
        assert!(me.may_see(&message(-3)), "after it");
        let ranges = me.visible_ranges();
        assert_eq!(ranges.first().map(|range| range.0), Some(live(-5)));
    }

    #[test]
    fn history_fetched_into_a_gap_is_judged_where_it_sits() {
        // Live: joined at 10, left at 20, joined again at 30 on a `joined`
        // setting. A gap before 30 was filled later: a message while away,
        // a visibility change to `shared`, then another message.
        let gap = |position: i64| {
            TimelinePoint::after_event(StreamPosition(30), StreamPosition(position))
        };
        let in_gap = |position: i64| {
            let mut event = message(position);
            event.slot = StreamPosition(30);
            event
        };
        let me = HistoryView::new(
            ME,
            // In the store's order, by position: the gap's below zero.
            vec![
                (live(10), MembershipState::Join),
                (live(20), MembershipState::Leave),
                (live(30), MembershipState::Join),
            ],
            vec![
                (gap(-6), HistoryVisibility::Shared),
                (live(1), HistoryVisibility::Joined),
            ],
        );
        assert!(
            !me.may_see(&in_gap(-8)),
            "away, and the room was `joined` then"
        );
        assert!(
            me.may_see(&in_gap(-4)),
            "away, but `shared` by then: joined later"
        );
        assert!(me.may_see(&message(35)), "after the rejoin");
        assert!(me.may_see(&message(15)), "while joined");
        assert!(!me.may_see(&message(25)), "away, live, and `joined` then");
        let ranges = me.visible_ranges();
        let seen = |event: &StoredEvent| {
            ranges.iter().any(|(after, upto)| {
                event.point() > *after && upto.is_none_or(|upto| event.point() <= upto)
            })
        };
        assert!(!seen(&in_gap(-8)) && seen(&in_gap(-4)), "{ranges:?}");
    }

    #[test]
    fn joined_hides_what_came_before_the_join() {
        let me = view(
            &[(10, MembershipState::Invite), (20, MembershipState::Join)],
            &[(1, HistoryVisibility::Joined)],
        );
        assert!(!me.may_see(&message(5)), "before the invite");
        assert!(!me.may_see(&message(15)), "while only invited");
        assert!(me.may_see(&message(25)), "after the join");
        assert!(
            !me.may_see(&event(10, MEMBER, Some(ME))),
            "an invite is not a join"
        );
        assert!(me.may_see(&event(20, MEMBER, Some(ME))), "my own join");
    }

    #[test]
    fn invited_shows_from_the_invite_on() {
        let me = view(
            &[(10, MembershipState::Invite), (20, MembershipState::Join)],
            &[(1, HistoryVisibility::Invited)],
        );
        assert!(!me.may_see(&message(5)));
        assert!(me.may_see(&message(15)));
        assert!(me.may_see(&message(25)));
    }

    #[test]
    fn shared_shows_the_past_to_those_who_joined_later() {
        let joined_later = view(&[(20, MembershipState::Join)], &[]);
        assert!(joined_later.may_see(&message(5)), "shared is the default");
        let only_invited = view(&[(20, MembershipState::Invite)], &[]);
        assert!(!only_invited.may_see(&message(5)));
        let never = view(&[], &[]);
        assert!(!never.may_see(&message(5)));
    }

    #[test]
    fn a_former_member_sees_nothing_after_leaving_unless_world_readable() {
        let left = view(
            &[(10, MembershipState::Join), (20, MembershipState::Leave)],
            &[
                (1, HistoryVisibility::Shared),
                (30, HistoryVisibility::WorldReadable),
            ],
        );
        assert!(left.may_see(&message(5)), "shared, joined after it");
        assert!(left.may_see(&message(15)));
        assert!(left.may_see(&event(20, MEMBER, Some(ME))), "own leave");
        assert!(!left.may_see(&message(25)), "after the leave");
        assert!(left.may_see(&message(35)), "world readable again");
        assert!(left.world_readable_now());
    }

    #[test]
    fn the_setting_at_each_event_counts_not_the_current_one() {
        // Opened up later: the early private part stays private.
        let me = view(
            &[(50, MembershipState::Join)],
            &[
                (1, HistoryVisibility::Joined),
                (30, HistoryVisibility::Shared),
            ],
        );
        assert!(!me.may_see(&message(20)));
        assert!(
            me.may_see(&event(30, HISTORY_VISIBILITY, Some(""))),
            "a change is judged by the more open of old and new"
        );
        assert!(me.may_see(&message(40)));
        assert!(!me.world_readable_now());
    }

    #[test]
    fn a_stranger_sees_only_world_readable_events() {
        let stranger = view(
            &[],
            &[
                (1, HistoryVisibility::WorldReadable),
                (10, HistoryVisibility::Joined),
            ],
        );
        assert!(stranger.may_see(&message(5)));
        assert!(
            stranger.may_see(&event(10, HISTORY_VISIBILITY, Some(""))),
            "the change away from world_readable was still world readable"
        );
        assert!(!stranger.may_see(&message(15)));
    }

    #[test]
    fn visible_ranges_agree_with_the_rule_at_every_ordinary_event() {
        let memberships = [
            MembershipState::Join,
            MembershipState::Invite,
            MembershipState::Leave,
            MembershipState::Ban,
        ];
        let visibilities = [
            HistoryVisibility::WorldReadable,
            HistoryVisibility::Shared,
            HistoryVisibility::Invited,
            HistoryVisibility::Joined,
        ];
        // Every sequence of up to three membership changes and two setting
        // changes at fixed places, each value from the lists above.
        let member_at = [10, 20, 30];
        let setting_at = [5, 25];
        for member_count in 0..=member_at.len() {
            for member_pick in 0..memberships.len().pow(member_count as u32) {
                for setting_count in 0..=setting_at.len() {
                    for setting_pick in 0..visibilities.len().pow(setting_count as u32) {
                        let pick = |mut n: usize, count: usize, len: usize| -> Vec<usize> {
                            (0..count)
                                .map(|_| {
                                    let digit = n % len;
                                    n /= len;
                                    digit
                                })
                                .collect()
                        };
                        let member_changes: Vec<(i64, MembershipState)> =
                            pick(member_pick, member_count, memberships.len())
                                .into_iter()
                                .zip(member_at)
                                .map(|(index, at)| (at, memberships[index].clone()))
                                .collect();
                        let setting_changes: Vec<(i64, HistoryVisibility)> =
                            pick(setting_pick, setting_count, visibilities.len())
                                .into_iter()
                                .zip(setting_at)
                                .map(|(index, at)| (at, visibilities[index].clone()))
                                .collect();
                        let me = view(&member_changes, &setting_changes);
                        let ranges = me.visible_ranges();
                        for position in 1..40 {
                            if member_at.contains(&position) || setting_at.contains(&position) {
                                continue;
                            }
                            let at = live(position);
                            let in_ranges = ranges.iter().any(|(after, upto)| {
                                at > *after && upto.is_none_or(|upto| at <= upto)
                            });
                            assert_eq!(
                                in_ranges,
                                me.may_see(&message(position)),
                                "at {position} with {member_changes:?} {setting_changes:?}: {ranges:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn visible_ranges_merge_and_end() {
        let me = view(
            &[(10, MembershipState::Join), (20, MembershipState::Leave)],
            &[(1, HistoryVisibility::Joined)],
        );
        // Before any setting the room counts as shared, and they join later.
        assert_eq!(
            me.visible_ranges(),
            vec![
                (TimelinePoint::BEFORE_ALL, Some(live(1))),
                (live(10), Some(live(20)))
            ]
        );
        let open = view(&[], &[(1, HistoryVisibility::WorldReadable)]);
        assert_eq!(open.visible_ranges(), vec![(live(1), None)]);
    }

    #[test]
    fn contents_read_with_safe_defaults() {
        assert_eq!(
            membership_in(r#"{"content":{"membership":"join"}}"#),
            MembershipState::Join
        );
        assert_eq!(membership_in("{}"), MembershipState::Leave);
        assert_eq!(
            visibility_in(r#"{"content":{"history_visibility":"world_readable"}}"#),
            HistoryVisibility::WorldReadable
        );
        assert_eq!(
            visibility_in(r#"{"content":{"history_visibility":"everyone"}}"#),
            HistoryVisibility::Joined
        );
        assert_eq!(visibility_in("{}"), HistoryVisibility::Joined);
    }
}
