//! The heap of ten thousand idle users: glibc's per-thread caches kept small (the process
//! restarts itself once with `GLIBC_TUNABLES`, which glibc reads only at startup), and freed
//! heap given back to the system once a second.
//!
//! A burst (ten thousand users logging in, each login a presence notice to everyone) fills
//! outboxes for a few seconds; glibc keeps what was freed in its arenas, so without
//! [`release_free_memory`] the server's resident memory stays at the burst's peak long
//! after the outboxes are empty.

/// The glibc tunable the server runs with: its per-thread malloc cache (tcache) keeps only
/// chunks of up to 128 bytes. By default each thread keeps up to seven freed chunks of every
/// size up to 1 KiB for itself; with a thread per user that was 5 KiB or so of dead heap per
/// idle user (a third of what the user cost), while the small chunks the hot paths allocate
/// and free stay as fast as before.
pub const MALLOC_TUNABLE: &str = "glibc.malloc.tcache_max=128";

/// Starts this program again (same process, arguments and environment) with
/// [`MALLOC_TUNABLE`] in `GLIBC_TUNABLES`, which glibc reads only at startup; returns
/// (doing nothing) where that is not glibc on Linux, when the variable already sets the
/// tcache size (a second start, or the operator's own choice: then the process is named
/// after the program), or if the exec fails.
pub fn restart_with_small_thread_caches() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
        if current
            .to_string_lossy()
            .contains("glibc.malloc.tcache_max")
        {
            name_process_after_program();
            return;
        }
        let mut value = current;
        if !value.is_empty() {
            value.push(":");
        }
        value.push(MALLOC_TUNABLE);
        let mut args = std::env::args_os();
        let Some(argv0) = args.next() else { return };
        let error = std::process::Command::new("/proc/self/exe")
            .arg0(argv0)
            .args(args)
            .env("GLIBC_TUNABLES", value)
            .exec();
        log::debug!("running without {MALLOC_TUNABLE}: cannot restart: {error}");
    }
}

/// Names the process after the file it was started as (`lanchat-server`): the kernel names
/// it after the file executed, and the second start runs `/proc/self/exe`, which `ps`, `top`
/// and `pkill lanchat-server` would then show as `exe`. Threads started later inherit it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn name_process_after_program() {
    use std::os::unix::ffi::OsStrExt;
    let Some(argv0) = std::env::args_os().next() else {
        return;
    };
    let Some(file) = std::path::Path::new(&argv0).file_name() else {
        return;
    };
    let Some(name) = super::thread::kernel_name(file.as_bytes()) else {
        return;
    };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which `name`
    // is, and keeps no pointer to it.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
    }
}

/// Returns free heap memory to the system (`malloc_trim`); cheap when there is little.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
