//! Claims that wait in the writer for new deliveries ("parked"), so that a new event's delivery is
//! inserted already claimed, in the event's own transaction, and handed to the delivery loop when
//! that transaction has committed: no claim of its own (no update of the row, no read of the
//! event, no round trip), and it starts as soon as the event is stored.
//!
//! The delivery loop parks a claim only when its last one found nothing due (`Dispatcher::run`),
//! and the writer parks it only if it still finds nothing, so a handed delivery never overtakes an
//! older one of its destination: while a claim is parked with room for a destination, every new
//! delivery of it is handed, and one that finds no room (or a keyed or filtered one, or one whose
//! destination the parked claim cannot take) is left pending and wakes the loop, which then takes
//! the queue in order again. A parked claim takes only destinations whose claims nothing gates: no
//! rate limit, not paused, the circuit closed; a note that changes a circuit, and a pause, withdraw
//! the destination from every parked claim (`Handoff::withdraw`). The loop unparks its claim when
//! it must look at the queue itself (a retry due, a wake-up, its own timer, shutdown).

use super::*;

/// One destination a parked claim can take, and how many more.
pub(super) struct Room {
    pub(super) destination: String,
    pub(super) left: usize,
    pub(super) lease_ms: Millis,
}

/// A claim waiting for new deliveries.
pub(super) struct Parked {
    pub(super) id: u64,
    pub(super) token: i64,
    pub(super) rooms: Vec<Room>,
    /// How many more it takes in all (its request's `total`, less what it was handed).
    pub(super) left: usize,
    pub(super) answer: Answer<Vec<Claimed>>,
    /// Handed in the batch being applied or committed, not yet answered.
    pub(super) handed: Vec<Claimed>,
}

/// The writer's parked claims.
#[derive(Default)]
pub(super) struct Handoff {
    parked: Vec<Parked>,
    /// Which parked claim each handoff of the batch being applied went to, in order: what a
    /// rollback gives back.
    log: Vec<usize>,
    /// The batch being applied left a new delivery pending: the loop must be woken for it.
    pub(super) pending: bool,
}

/// Where a handed delivery goes: the parked claim's index, its token and its lease.
pub(super) struct Slot {
    index: usize,
    pub(super) token: i64,
    pub(super) lease_ms: Millis,
}

impl Handoff {
    pub(super) fn park(&mut self, parked: Option<Parked>) {
        self.parked.extend(parked);
    }

    /// A parked claim with room for a delivery of `destination`, taken.
    pub(super) fn slot(&mut self, destination: &str) -> Option<Slot> {
        let (index, at) = self.parked.iter().enumerate().find_map(|(i, p)| {
            let at = p.rooms.iter().position(|r| r.destination == destination && r.left > 0);
            at.filter(|_| p.left > 0).map(|at| (i, at))
        })?;
        let parked = &mut self.parked[index];
        parked.rooms[at].left -= 1;
        parked.left -= 1;
        self.log.push(index);
        Some(Slot { index, token: parked.token, lease_ms: parked.rooms[at].lease_ms })
    }

    pub(super) fn hand(&mut self, slot: &Slot, claimed: Claimed) {
        self.parked[slot.index].handed.push(claimed);
    }

    /// How far the batch being applied has handed: a savepoint's mark.
    pub(super) fn mark(&self) -> usize {
        self.log.len()
    }

    /// Gives back what was handed since `mark` (its writes were rolled back).
    pub(super) fn undo_to(&mut self, mark: usize) {
        while self.log.len() > mark {
            let Some(index) = self.log.pop() else { break };
            let parked = &mut self.parked[index];
            if let Some(c) = parked.handed.pop()
                && let Some(room) = parked.rooms.iter_mut().find(|r| r.destination == c.destination)
            {
                room.left += 1;
                parked.left += 1;
            }
        }
    }

    /// The batch committed: what it handed stands.
    pub(super) fn committed(&mut self) {
        self.log.clear();
    }

    /// `destination`'s claims are gated now (paused, its circuit changed): no parked claim takes
    /// it any more. Not undone with its batch: a claim that could have taken more only asks again.
    pub(super) fn withdraw(&mut self, destination: &str) {
        for room in self.parked.iter_mut().flat_map(|p| p.rooms.iter_mut()) {
            if room.destination == destination {
                room.left = 0;
            }
        }
    }

    /// Takes the claim parked as `id` out, if it is.
    pub(super) fn unpark(&mut self, id: u64) -> Option<Parked> {
        let at = self.parked.iter().position(|p| p.id == id)?;
        Some(self.parked.remove(at))
    }

    /// Takes out the parked claims to answer after a commit: those handed something, and those
    /// that can take nothing more.
    pub(super) fn ready(&mut self) -> Vec<Parked> {
        let (ready, rest) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| !p.handed.is_empty() || p.left == 0 || p.rooms.iter().all(|r| r.left == 0));
        self.parked = rest;
        ready
    }

    /// Every parked claim, for a writer that stops.
    pub(super) fn all(&mut self) -> Vec<Parked> {
        std::mem::take(&mut self.parked)
    }
}

impl Parked {
    /// Tells the loop what it was handed, or `refused`.
    pub(super) fn answer(self, refused: Option<StoreError>) {
        let Parked { mut answer, handed, .. } = self;
        tracing::debug!(handed = handed.len(), "parked claim answered");
        let outcome = match refused {
            Some(e) => Err(e),
            None => {
                answer.set(handed);
                Ok(())
            }
        };
        answer.send(outcome);
    }
}
