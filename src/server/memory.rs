//! Giving freed memory back to the system. A burst (ten thousand users logging in, each
//! login a presence notice to everyone) fills outboxes for a few seconds; glibc keeps what
//! was freed in its per-thread arenas, so without this the server's resident memory stays
//! at the burst's peak long after the outboxes are empty.

/// Returns free heap memory to the system (`malloc_trim`); cheap when there is little.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
