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
        let mut tick = actix_web::rt::time::interval(idle_after);
        let mut seen = REQUESTS_BEGUN.with(Cell::get);
        let mut released = false;
        loop {
            tick.tick().await;
            let begun = REQUESTS_BEGUN.with(Cell::get);
            let idle = IdleCheck {
                seen,
                begun,
                released,
            };
            if idle.should_release() {
                release_freed_memory();
            }
            (seen, released) = idle.next();
        }
    });
}

/// One tick of the idle check: release once after a tick without requests, then not again
/// until requests have come and gone.
#[derive(Debug, Clone, Copy)]
struct IdleCheck {
    seen: u64,
    begun: u64,
    released: bool,
}

impl IdleCheck {
    fn should_release(self) -> bool {
        self.begun == self.seen && !self.released
    }

    /// (requests seen, released) for the next tick.
    fn next(self) -> (u64, bool) {
        (self.begun, self.begun == self.seen)
    }
}

#[cfg(test)]
mod tests {
    use super::IdleCheck;

    #[test]
    fn releases_once_per_idle_period() {
        let busy = IdleCheck {
            seen: 3,
            begun: 5,
            released: false,
        };
        assert!(!busy.should_release());
        let (seen, released) = busy.next();
        let first_idle_tick = IdleCheck {
            seen,
            begun: 5,
            released,
        };
        assert!(first_idle_tick.should_release());
        let (seen, released) = first_idle_tick.next();
        let still_idle = IdleCheck {
            seen,
            begun: 5,
            released,
        };
        assert!(!still_idle.should_release(), "one release per idle period");
        let (seen, released) = still_idle.next();
        let busy_again = IdleCheck {
            seen,
            begun: 9,
            released,
        };
        assert!(!busy_again.should_release());
        let (seen, released) = busy_again.next();
        assert!(
            IdleCheck {
                seen,
                begun: 9,
                released
            }
            .should_release()
        );
    }
}
