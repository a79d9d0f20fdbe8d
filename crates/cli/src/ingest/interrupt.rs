//! Ctrl-C while a command follows an ingestion.
//!
//! Guarantee: from [`Interrupts::install`] on, SIGINT no longer kills the process outright; the
//! first one is only noted (the command then cancels its job through the API, says so and
//! exits 130), and a second one ends the process at once with 130, saying which job may still
//! be cancelling. A dedicated thread receives the signals, so the second one is honoured even
//! while the main thread waits for the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use parking_lot::{Condvar, Mutex};
use tokio::signal::unix::{SignalKind, signal};

use crate::exit::Exit;

/// Ctrl-Cs received since [`Interrupts::install`].
#[derive(Debug, Clone)]
pub struct Interrupts {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    pressed: AtomicU32,
    /// The job being followed, named by the second Ctrl-C's message.
    job: Mutex<Option<String>>,
    /// Wakes [`Interrupts::wait`] at the first Ctrl-C.
    woken: Condvar,
}

impl Interrupts {
    /// Takes over SIGINT; returns once the handler is in place.
    pub fn install() -> anyhow::Result<Interrupts> {
        let shared = Arc::new(Shared::default());
        let (ready, installed) = std::sync::mpsc::channel::<Result<(), String>>();
        let receiver = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("ctrl-c".to_owned())
            .spawn(move || receive(receiver, ready))
            .context("cannot start the Ctrl-C handler")?;
        match installed.recv() {
            Ok(Ok(())) => Ok(Interrupts { shared }),
            Ok(Err(why)) => Err(anyhow::anyhow!("cannot handle Ctrl-C: {why}")),
            Err(_) => Err(anyhow::anyhow!("cannot handle Ctrl-C: the handler stopped")),
        }
    }

    /// Names the job a second Ctrl-C should mention.
    pub fn following(&self, id: &str) {
        *self.shared.job.lock() = Some(id.to_owned());
    }

    /// Whether Ctrl-C was pressed.
    pub fn pressed(&self) -> bool {
        self.shared.pressed.load(Ordering::SeqCst) > 0
    }

    /// Sleeps for `duration`, or less if Ctrl-C is pressed meanwhile.
    pub fn wait(&self, duration: Duration) {
        let mut guard = self.shared.job.lock();
        if self.pressed() {
            return;
        }
        let _ = self.shared.woken.wait_for(&mut guard, duration);
    }
}

/// The signal thread: counts Ctrl-Cs, exits at the second.
fn receive(shared: Arc<Shared>, ready: std::sync::mpsc::Sender<Result<(), String>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error.to_string()));
            return;
        }
    };
    runtime.block_on(async move {
        let mut interrupts = match signal(SignalKind::interrupt()) {
            Ok(interrupts) => interrupts,
            Err(error) => {
                let _ = ready.send(Err(error.to_string()));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        while interrupts.recv().await.is_some() {
            if shared.pressed.fetch_add(1, Ordering::SeqCst) == 0 {
                // Taken under the lock, so a waiter cannot miss it between check and wait.
                let _guard = shared.job.lock();
                shared.woken.notify_all();
                continue;
            }
            let job = shared.job.lock().clone();
            match job {
                Some(id) => eprintln!(
                    "error: interrupted again; ingestion {id} may still be cancelling: check \
                     `keyledger ingest status {id}`"
                ),
                None => eprintln!("error: interrupted again"),
            }
            std::process::exit(Exit::Interrupted as i32);
        }
    });
}
