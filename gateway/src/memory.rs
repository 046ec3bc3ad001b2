//! Handing memory that a burst of work freed back to the operating system once the server is
//! idle.
//!
//! mimalloc, the binary's allocator, keeps the pages a thread freed until that same thread
//! allocates again, and an idle thread allocates nothing: the memory of a server's last burst
//! (start-up, a token's argon2 verification, a bulk write) stayed resident while it sat idle
//! (docs/performance.md). Purging on every free (`MIMALLOC_PURGE_DELAY=0`) returned it but cost
//! ~13 % more CPU per audited read; collecting once per idle period costs nothing under load.

use std::cell::Cell;
use std::time::Duration;

/// Return what the calling thread freed, and the process-wide arenas' free pages, to the OS.
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` has no preconditions: any thread may call it at any time. Where
    // mimalloc is not the global allocator (test binaries) its own heaps are empty and the call
    // does nothing.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
}

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, the same index in mimalloc 2 and 3); the
/// Rust bindings name it only under its old name in version 2.
const PURGE_DELAY_OPTION: libmimalloc_sys::mi_option_t = 15;

/// Start-up of the server: while the returned [`StartUp`] lives, the allocator hands every page
/// freed back to the OS at once instead of after its purge delay. Start-up parses the reference
/// data and the definitions through many short-lived values; with the delay, what they left
/// behind stayed resident even after a forced collect (docs/performance.md). Serving keeps the
/// delay: purging on every free cost ~13 % more CPU per audited read.
pub fn start_up_begins() -> StartUp {
    let found = purge_delay();
    set_purge_delay(0);
    StartUp { purge_delay: found }
}

/// Start-up in progress (see [`start_up_begins`]). Dropped, it restores the purge delay it found
/// (the default, or `MIMALLOC_PURGE_DELAY`) and releases what start-up freed.
#[derive(Debug)]
pub struct StartUp {
    purge_delay: std::ffi::c_long,
}

impl Drop for StartUp {
    fn drop(&mut self) {
        set_purge_delay(self.purge_delay);
        release_freed_memory();
    }
}

/// The allocator's purge delay in milliseconds.
fn purge_delay() -> std::ffi::c_long {
    // SAFETY: mimalloc's options may be read at any time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION)
    }
}

fn set_purge_delay(milliseconds: std::ffi::c_long) {
    // SAFETY: mimalloc's options may be set at any time from any thread; where mimalloc is not
    // the global allocator (test binaries) only its own unused heaps see the value.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, milliseconds)
    };
}

thread_local! {
    /// Requests this thread has begun; an idle check compares it with the last one it saw.
    static REQUESTS_BEGUN: Cell<u64> = const { Cell::new(0) };
}

/// Count a request on the current thread (called by the request middleware).
pub fn note_request() {
    REQUESTS_BEGUN.with(|begun| begun.set(begun.get().wrapping_add(1)));
}

/// On the current HTTP worker thread: once no request has begun for `idle_after`, release what
/// the thread freed, once per idle period. `Duration::ZERO` turns it off.
pub fn release_when_idle(idle_after: Duration) {
    if idle_after.is_zero() {
        return;
    }
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(idle_after / QUIET_TICKS);
        let mut idle = IdleCheck::new(REQUESTS_BEGUN.with(Cell::get));
        loop {
            tick.tick().await;
            if idle.tick(REQUESTS_BEGUN.with(Cell::get)) {
                release_freed_memory();
            }
        }
    });
}

/// Ticks without a request before a worker counts as idle. One tick of `idle_after` released
/// anywhere between one and two periods after the last request (2–4 s with the default), so an
/// RSS read 3 s after a burst found the memory released or not by chance; quarter-period ticks
/// release between 1 and 1.25 periods after it.
const QUIET_TICKS: u32 = 4;

/// The idle check of one worker: release once after [`QUIET_TICKS`] ticks without a request,
/// then not again until requests have come and gone.
#[derive(Debug, Clone, Copy)]
struct IdleCheck {
    /// Requests begun as of the last tick.
    seen: u64,
    /// Ticks in a row without a new request.
    quiet: u32,
}

impl IdleCheck {
    fn new(begun: u64) -> IdleCheck {
        IdleCheck {
            seen: begun,
            quiet: 0,
        }
    }

    /// One tick, with the requests begun so far: whether to release now.
    fn tick(&mut self, begun: u64) -> bool {
        if begun != self.seen {
            self.seen = begun;
            self.quiet = 0;
            return false;
        }
        self.quiet = self.quiet.saturating_add(1);
        self.quiet == QUIET_TICKS
    }
}

#[cfg(test)]
mod tests {
    use super::{IdleCheck, QUIET_TICKS, purge_delay, start_up_begins};

    #[test]
    fn start_up_purges_at_once_and_gives_the_delay_back() {
        let serving = purge_delay();
        assert_ne!(serving, 0, "mimalloc's default delays purges");
        let start_up = start_up_begins();
        assert_eq!(purge_delay(), 0);
        drop(start_up);
        assert_eq!(purge_delay(), serving);
    }

    /// The ticks (1-based) at which a check releases, given the requests begun at each tick.
    fn releases(begun_per_tick: &[u64]) -> Vec<usize> {
        let mut idle = IdleCheck::new(0);
        (1..)
            .zip(begun_per_tick)
            .filter(|&(_, &begun)| idle.tick(begun))
            .map(|(tick, _)| tick)
            .collect()
    }

    #[test]
    fn releases_after_a_full_quiet_period_and_once_per_idle_period() {
        let quiet = QUIET_TICKS as usize;
        // Requests at ticks 1 and 2, then none: released `quiet` ticks after the last one,
        // and not again however long the worker stays idle.
        let mut begun = vec![3, 5];
        begun.resize(2 + 3 * quiet, 5);
        assert_eq!(releases(&begun), [2 + quiet]);
        // A request before the period is over starts it again.
        let mut begun = vec![5; quiet - 1];
        begun.push(6);
        begun.resize(3 * quiet, 6);
        assert_eq!(releases(&begun), [quiet + quiet]);
        // Busy again after a release: released again after the next quiet period.
        let mut begun = vec![0; quiet];
        begun.push(9);
        begun.resize(3 * quiet, 9);
        assert_eq!(releases(&begun), [quiet, 2 * quiet + 1]);
    }
}
