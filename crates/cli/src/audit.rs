//! `keyledger audit …` and the offline `keyledger admin` commands (rotation, backup, restore).
//!
//! The binary owns these commands; the audit crate is the library they call (typed results,
//! no printing). Offline commands open the data directory, which a running server holds
//! locked: those commands then name the command that works next to it — `--remote`, which asks
//! the server over its API with the saved key (or `KEYLEDGER_API_KEY`) and `--endpoint`, for
//! `verify`, `replay`, `export`, `public-key` and `checkpoint`, or a backup for `shredded`.

mod args;
mod commands;
mod remote;
#[cfg(test)]
mod tests;

pub use args::{AdminAuditCommand, AuditCommand};
use commands::{HeldByServer, VerificationFailed};
use remote::{Remote, RemoteFailure, RunContext};

use crate::client::{ClientArgs, resolve};
use crate::exit::{Exit, Failure};

pub fn run(command: &AuditCommand, global: &ClientArgs) -> anyhow::Result<()> {
    command.run(&context(global)?).map_err(exit_code)
}

pub fn run_admin(command: &AdminAuditCommand, global: &ClientArgs) -> anyhow::Result<()> {
    command.run(&context(global)?).map_err(exit_code)
}

fn context(global: &ClientArgs) -> anyhow::Result<RunContext> {
    let (endpoint, key) = resolve(global)?;
    Ok(RunContext {
        json: global.json,
        remote: key.map(|key| Remote { endpoint, key }),
    })
}

fn exit_code(err: anyhow::Error) -> anyhow::Error {
    if err.downcast_ref::<VerificationFailed>().is_some() {
        return Failure::new(Exit::VerificationFailed, format!("{err:#}")).into();
    }
    if err.downcast_ref::<HeldByServer>().is_some() {
        return Failure::new(Exit::Conflict, format!("{err:#}")).into();
    }
    // `--remote`: a refusal exits as the same status does in every other command.
    if let Some(refused) = err.downcast_ref::<RemoteFailure>() {
        let exit = refused.status.map_or(Exit::Server, Exit::for_status);
        return Failure::new(exit, refused.message.clone()).into();
    }
    err
}
