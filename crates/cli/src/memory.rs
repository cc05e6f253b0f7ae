//! Giving back to the system the memory a large call freed (the allocator
//! itself is in `allocator.rs`).
//!
//! glibc's allocator, which holds the command's blocks of 64 KiB and more,
//! maps a large block of its own and unmaps it when it is freed, until such a
//! free raises its mapping threshold (up to 32 MiB): later large blocks come
//! from its heap and stay in its free lists once freed. (When it held the
//! small blocks too, an instance that read 30 MiB of records stayed 200 MiB
//! larger after the call was over.) `malloc_trim` hands those pages back. It walks
//! every arena under its lock, so it runs only when the allocator holds a
//! good deal of freed memory, checked every few seconds, never on a call's
//! path. The resident size alone cannot tell: it stays high both while a call
//! still uses its memory and after the call freed it.

use std::time::Duration;

/// How often the allocator's free lists are looked at.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const EVERY: Duration = Duration::from_secs(2);
/// How much freed memory the allocator may hold before it is trimmed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HELD: usize = 32 * 1024 * 1024;

/// Starts the task that trims the allocator when it holds freed memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release_freed_memory_in_the_background() {
    tokio::spawn(async {
        let mut interval = tokio::time::interval(EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let held = freed_but_held();
            if held > HELD {
                trim();
                tracing::debug!(
                    before = held,
                    after = freed_but_held(),
                    "gave freed memory back"
                );
            }
        }
    });
}

/// Other allocators give memory back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_freed_memory_in_the_background() {}

/// The bytes glibc's arenas hold in free chunks.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn freed_but_held() -> usize {
    // SAFETY: `mallinfo2` takes no pointer and returns a plain struct; it
    // locks each arena while it reads its statistics.
    unsafe { libc::mallinfo2() }.fordblks
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: `malloc_trim` takes no pointer and touches only glibc's own
    // free lists, which it locks while it runs.
    unsafe {
        libc::malloc_trim(0);
    }
}
