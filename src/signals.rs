//! SIGTERM and SIGINT for the commands that write or compute for long
//! (`materialize`, `verify`): the first asks the run to stop cleanly, a second
//! one ends the process at once.

use psync_core::Stop;
use tokio::signal::unix::{SignalKind, signal};

/// The exit code of a process ended by `signal`, as shells report it (128 + its number).
pub fn exit_code(signal: &str) -> u8 {
    match signal {
        "SIGINT" => 130,
        _ => 143,
    }
}

/// Listens for SIGTERM and SIGINT on `runtime` from now on; the returned
/// [`Stop`] is requested by the first one.
pub fn install(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Stop> {
    use anyhow::Context;
    let stop = Stop::new();
    // Registered here, before any work starts, so that no signal falls between.
    let _enter = runtime.enter();
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let requested = stop.clone();
    runtime.spawn(async move {
        let mut heard = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            heard += 1;
            if heard == 1 {
                tracing::info!(
                    signal = name,
                    "stopping: cleaning up and releasing the lease (send it again to end at once)"
                );
                requested.request(name);
            } else {
                eprintln!("{name} again: ending at once");
                std::process::exit(i32::from(exit_code(name)));
            }
        }
    });
    Ok(stop)
}
