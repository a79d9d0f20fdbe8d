//! `keyledger audit …` and the offline `keyledger admin` commands (rotation, backup, restore):
//! glue between the binary's global flags and the audit crate.

use keyledger_audit::cli::{
    AdminAuditCommand, AuditCommand, HeldByServer, Remote, RemoteFailure, RunContext,
    VerificationFailed,
};

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
