//! The allocator of the `framex` command (and of the hand-built peers that
//! `cargo xtask bench` measures it against, which include this file).
//!
//! Blocks smaller than [`SMALL`] come from jemalloc, larger ones from the
//! system's allocator (glibc's). A call allocates and frees dozens of small
//! blocks, often on two worker threads (one allocates what the other frees):
//! glibc serves those under its arenas' locks once a thread's cache is full,
//! and under (a) at c=64 most of an instance's futex calls were on them,
//! where jemalloc's thread caches and per-CPU arenas take none. A large call
//! is the other way round: glibc grows a large block in place with `mremap`
//! and unmaps it when it is freed, where jemalloc copies it at every doubling
//! of a growing array and holds the pages a while, which doubled the peak of
//! 30 MiB of arguments (`cargo xtask memory`: 357–394 MiB against 198 MiB)
//! and it still held 43–62 MiB when that looked after the call (8 MiB with
//! glibc's). No allocator crate splits by size; [`Split`] does, in a few
//! lines.
//!
//! A program that embeds FrameX's library crates chooses its own allocator;
//! this one is the command's.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of this size and more come from the system's allocator, smaller
/// ones from jemalloc. Every buffer of a small call is smaller (hyper's read
/// buffer starts at 8 KiB); a large call's arrays, strings and bodies soon
/// grow past it.
const SMALL: usize = 64 * 1024;

/// jemalloc's settings: a background thread purges freed pages, those unused
/// for a second given back to the system (by default after ten).
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// The allocator of the `framex` command: by size, jemalloc or the system's.
/// Which one holds a block follows from its size alone, which Rust passes
/// back at every `dealloc` and `realloc`; a `realloc` that crosses [`SMALL`]
/// moves the block to the other allocator.
struct Split;

#[global_allocator]
static ALLOCATOR: Split = Split;

/// Whether a block of `size` bytes belongs to jemalloc.
fn small(size: usize) -> bool {
    size < SMALL
}

// SAFETY: every method forwards to the allocator that owns the block by its
// size, with the caller's layout; both are `GlobalAlloc`s themselves.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Split {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe {
            if small(layout.size()) {
                tikv_jemallocator::Jemalloc.alloc(layout)
            } else {
                System.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if small(layout.size()) {
                tikv_jemallocator::Jemalloc.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated with `layout`, so by the allocator its
        // size chose.
        unsafe {
            if small(layout.size()) {
                tikv_jemallocator::Jemalloc.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (from_small, to_small) = (small(layout.size()), small(new_size));
        // SAFETY: `ptr` was allocated with `layout` by the allocator its size
        // chose; within one allocator its own `realloc` keeps the contract,
        // across the two the block is copied (the smaller of the two sizes)
        // into a new one of the other, and the old one freed.
        unsafe {
            match (from_small, to_small) {
                (true, true) => tikv_jemallocator::Jemalloc.realloc(ptr, layout, new_size),
                (false, false) => System.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}
