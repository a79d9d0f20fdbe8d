//! Serves a folder as a DNAnexus project, for trying `dx` or the connector by hand and for
//! benchmarks: `dnanexus-emulator --port N --data DIR [--token T] [--part-size BYTES]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use keyledger_testkit::dnanexus::{DnanexusEmulator, FROM_DIR_USER, Seed};
use ring::rand::{SecureRandom, SystemRandom};

const USAGE: &str =
    "usage: dnanexus-emulator --data DIR [--port N] [--token TOKEN] [--part-size BYTES]

Serves every file under DIR as one DNAnexus project (named after DIR) on 127.0.0.1:N (default: a
free port). TOKEN (default: random, printed) authenticates as user-emulator. Files are split into
parts of BYTES (default 67108864).";

struct Arguments {
    port: u16,
    data: PathBuf,
    token: Option<String>,
    part_size: Option<u64>,
}

fn parse_arguments() -> anyhow::Result<Arguments> {
    let mut port = 0;
    let mut data = None;
    let mut token = None;
    let mut part_size = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let mut value = || {
            arguments
                .next()
                .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))
        };
        match flag.as_str() {
            "--port" => port = value()?.parse().context("--port must be a number")?,
            "--data" => data = Some(PathBuf::from(value()?)),
            "--token" => token = Some(value()?),
            "--part-size" => {
                part_size = Some(
                    value()?
                        .parse()
                        .context("--part-size must be a number of bytes")?,
                )
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let Some(data) = data else {
        bail!("--data is required\n\n{USAGE}")
    };
    Ok(Arguments {
        port,
        data,
        token,
        part_size,
    })
}

fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness available"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = parse_arguments()?;
    let token = match arguments.token {
        Some(token) => token,
        None => random_token()?,
    };
    let data = arguments.data.clone();
    let part_size = arguments.part_size;
    let mut seed = tokio::task::spawn_blocking(move || match part_size {
        Some(part_size) => Seed::from_dir_with_part_size(&data, part_size),
        None => Seed::from_dir(&data),
    })
    .await??;
    seed.add_token(FROM_DIR_USER, &token);
    let emulator =
        DnanexusEmulator::start_on(seed, SocketAddr::from(([127, 0, 0, 1], arguments.port)))
            .await?;
    let control = emulator.control();
    let project_name = arguments
        .data
        .canonicalize()?
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("emulated")
        .to_owned();
    let project = control
        .project_id(&project_name)
        .context("the seeded project is missing")?;
    let files = control.files(&project);
    let bytes: u64 = files.iter().map(|file| file.size).sum();
    let context = serde_json::json!({"auth_token_type": "Bearer", "auth_token": token}).to_string();
    println!("DNAnexus emulator listening on {}", emulator.endpoint());
    println!(
        "project {project} ({project_name}): {} files, {bytes} bytes",
        files.len()
    );
    println!();
    println!("# Use it with dx:");
    println!("unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY");
    println!(
        "export DX_APISERVER_PROTOCOL=http DX_APISERVER_HOST={} DX_APISERVER_PORT={}",
        emulator.host(),
        emulator.port()
    );
    println!("export DX_SECURITY_CONTEXT='{context}'");
    println!("export DX_PROJECT_CONTEXT_ID={project}");
    println!("export DX_USER_CONF_DIR=$(mktemp -d)");
    println!();
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
