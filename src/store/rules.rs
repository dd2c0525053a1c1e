//! The rules every backend keeps, written once: statuses and outcomes as types (each backend maps
//! them to SQL in one place: `sqlite/status.rs`, `postgres/status.rs`), where an attempt moves a
//! delivery, how an event's status derives from its deliveries', paging cursors and claim tokens.
//! No SQL runs here; `event_status_sql!` only writes the derivation for a backend to embed.

use std::fmt;

use super::{Millis, NextState, StoreError};

/// Generates a status-like enum: its lower-case names as stored and shown, `as_str`, parsing.
macro_rules! named {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant,)* }

        impl $name {
            /// Every value, in the order they are listed (and counted) everywhere.
            pub const ALL: [$name; [$($text),*].len()] = [$($name::$variant),*];
            /// The names, as stored and shown (the admin API's `status` values).
            pub const NAMES: [&'static str; [$($text),*].len()] = [$($text),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// The value named `s`, if any.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// A value equals its name: `status == "dead"`.
        impl PartialEq<&str> for $name {
            fn eq(&self, name: &&str) -> bool {
                self.as_str() == *name
            }
        }

        /// As its name: the admin API's JSON shows the stored names.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::parse(s).ok_or_else(|| format!("unknown {} {s:?}", stringify!($name)))
            }
        }
    };
}

named! {
    /// Where a delivery is. Stored as its name; the schemas CHECK the names.
    DeliveryStatus {
        /// Due at `next_attempt_at` (a new delivery, or one replayed).
        Pending = "pending",
        /// Claimed by a worker until its lease runs out.
        InFlight = "in_flight",
        Succeeded = "succeeded",
        /// An attempt failed; retried at `next_attempt_at`.
        Failed = "failed",
        /// Out of attempts, or refused for good; waits for a replay.
        Dead = "dead",
        /// Its filter did not match (or raised; `last_error` says which): never attempted, unless
        /// replayed for this destination.
        Filtered = "filtered",
    }
}

named! {
    /// An event's status, derived from its deliveries' (see [`EventStatus::of`]).
    EventStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Dead = "dead",
        Filtered = "filtered",
    }
}

named! {
    /// How one attempt ended, as the attempt log records it.
    Outcome {
        Success = "success",
        Failure = "failure",
        /// The destination did not answer within its timeout.
        Timeout = "timeout",
        /// hookgate stopped before the attempt finished (logged at the next start).
        Interrupted = "interrupted",
    }
}

impl DeliveryStatus {
    /// Nothing more happens to it without a replay.
    pub fn is_finished(self) -> bool {
        matches!(self, DeliveryStatus::Succeeded | DeliveryStatus::Dead | DeliveryStatus::Filtered)
    }

    /// It waits for an attempt at `next_attempt_at` (shown as such); otherwise that time means nothing.
    pub fn awaits_attempt(self) -> bool {
        matches!(self, DeliveryStatus::Pending | DeliveryStatus::Failed)
    }
}

impl EventStatus {
    /// `dead` if any delivery is dead; `filtered` if all are filtered; `succeeded` if every one
    /// succeeded or was filtered (an event without deliveries too); else `pending` (CONTRACT §7).
    pub fn of(deliveries: impl IntoIterator<Item = DeliveryStatus>) -> EventStatus {
        let (mut all_done, mut all_filtered, mut any) = (true, true, false);
        for d in deliveries {
            any = true;
            match d {
                DeliveryStatus::Dead => return EventStatus::Dead,
                DeliveryStatus::Filtered => {}
                DeliveryStatus::Succeeded => all_filtered = false,
                _ => (all_done, all_filtered) = (false, false),
            }
        }
        match (all_done, all_filtered && any) {
            (_, true) => EventStatus::Filtered,
            (true, false) => EventStatus::Succeeded,
            (false, _) => EventStatus::Pending,
        }
    }
}

/// [`EventStatus::of`] as an SQL expression over the table `deliveries d`, for an event `e` whose
/// deliveries the SQL condition given selects (each backend finds them its own way). A macro, so
/// that each backend's statement stays a constant.
macro_rules! event_status_sql {
    ($($of_event:tt)+) => {
        concat!(
            "CASE
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE ", $($of_event)+, " AND d.status = 'dead') THEN 'dead'
    WHEN NOT EXISTS (SELECT 1 FROM deliveries d WHERE ", $($of_event)+, " AND d.status <> 'filtered')
         AND EXISTS (SELECT 1 FROM deliveries d WHERE ", $($of_event)+, ") THEN 'filtered'
    WHEN NOT EXISTS (SELECT 1 FROM deliveries d WHERE ", $($of_event)+, " AND d.status NOT IN ('succeeded', 'filtered')) THEN 'succeeded'
    ELSE 'pending' END"
        )
    };
}

/// SQL: the delivery `d` has no ordering key, or no delivery of its destination and key with a
/// lower id is open (pending, failed or in flight): the one ordering rule, for both backends.
/// The status test is an OR, as the WHERE of SQLite's `deliveries_ordered` is (migration 12: an
/// IN list of three makes SQLite build a table each time); PostgreSQL's index, whose WHERE is
/// the IN, is used for it all the same.
macro_rules! key_free {
    () => {
        "(d.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries o
            WHERE o.destination = d.destination AND o.ordering_key = d.ordering_key AND o.id < d.id
              AND (o.status = 'pending' OR o.status = 'failed' OR o.status = 'in_flight')))"
    };
}

impl NextState {
    /// The delivery's status after the attempt, and its `next_attempt_at` (`now` unless a retry).
    pub fn status_at(self, now: Millis) -> (DeliveryStatus, Millis) {
        match self {
            NextState::Succeeded => (DeliveryStatus::Succeeded, now),
            NextState::Retry { at } => (DeliveryStatus::Failed, at),
            NextState::Dead => (DeliveryStatus::Dead, now),
        }
    }
}

/// Deliveries per event at most: a delivery's id is `event_seq * DELIVERY_SLOTS + slot` on every
/// backend, the slot being its place among the event's deliveries (the order of the source's
/// `deliver_to`). So an event's deliveries are one range of ids, and ids grow with events.
pub(crate) const DELIVERY_SLOTS: i64 = crate::config::MAX_DELIVER_TO as i64;

/// The range of delivery ids that belong to the event `seq`.
pub(crate) fn delivery_ids(seq: i64) -> (i64, i64) {
    (seq * DELIVERY_SLOTS, seq * DELIVERY_SLOTS + DELIVERY_SLOTS - 1)
}

/// A page's cursor: the last id of the previous page, as the store handed it out.
pub(crate) fn parse_cursor(cursor: &Option<String>) -> Result<Option<i64>, StoreError> {
    cursor
        .as_deref()
        .map(|c| c.parse::<i64>().map_err(|_| StoreError::Invalid(format!("invalid cursor {c:?}"))))
        .transpose()
}

/// A fresh claim token: random, so that a record with a token of an older claim cannot match.
pub(crate) fn claim_token() -> i64 {
    rand::random::<i64>() & i64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    #[test]
    fn names_parse_back() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        for s in Outcome::ALL {
            assert_eq!(s.as_str().parse::<Outcome>(), Ok(s));
        }
        assert_eq!(DeliveryStatus::NAMES, ["pending", "in_flight", "succeeded", "failed", "dead", "filtered"]);
        assert_eq!(EventStatus::NAMES, ["pending", "succeeded", "dead", "filtered"]);
        assert!("ok".parse::<Outcome>().is_err());
    }

    #[test]
    fn an_events_status_derives_from_its_deliveries() {
        for (deliveries, want) in [
            (&[][..], EventStatus::Succeeded),
            (&[Succeeded, Succeeded][..], EventStatus::Succeeded),
            (&[Succeeded, Failed][..], EventStatus::Pending),
            (&[InFlight][..], EventStatus::Pending),
            (&[Pending, Dead, Succeeded][..], EventStatus::Dead),
            (&[Filtered, Filtered][..], EventStatus::Filtered),
            (&[Filtered, Succeeded][..], EventStatus::Succeeded),
            (&[Filtered, Pending][..], EventStatus::Pending),
            (&[Filtered, Dead][..], EventStatus::Dead),
        ] {
            assert_eq!(EventStatus::of(deliveries.iter().copied()), want, "{deliveries:?}");
        }
    }

    #[test]
    fn next_states_map_to_statuses() {
        assert_eq!(NextState::Succeeded.status_at(5), (Succeeded, 5));
        assert_eq!(NextState::Retry { at: 9 }.status_at(5), (Failed, 9));
        assert_eq!(NextState::Dead.status_at(5), (Dead, 5));
        assert!(parse_cursor(&Some("x".into())).is_err());
        assert_eq!(parse_cursor(&Some("42".into())).unwrap(), Some(42));
    }
}
