//! The `keyledger` client commands against a real server: the seed workflow, exit codes, the
//! credentials file, and errors as one line on standard error.

use std::os::unix::fs::PermissionsExt;

use crate::support::Server;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

#[test]
fn the_seed_workflow_through_the_cli() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let cli = |args: &[&str], stdin: &str| server.cli(&config, args, stdin, &[]);

    // Not logged in yet: exit 2 with one line.
    let run = cli(&["whoami"], "");
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1);
    assert!(run.stderr.starts_with("error: not logged in"), "{run:?}");

    // Login reads the key from standard input and saves it with mode 0600.
    let run = cli(&["login"], &format!("{}\n", server.admin_key));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("as admin"), "{run:?}");
    assert!(!run.stdout.contains(&server.admin_key));
    let credentials = config.join("credentials.toml");
    assert_eq!(
        std::fs::metadata(&credentials)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&credentials)
            .unwrap()
            .contains(&server.base)
    );
    let run = cli(&["whoami"], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("user:        admin"), "{}", run.stdout);

    // Users and roles.
    assert_eq!(
        cli(
            &[
                "admin",
                "users",
                "create",
                "erin",
                "--role",
                "developer",
                "--display-name",
                "Erin"
            ],
            ""
        )
        .code,
        0
    );
    assert_eq!(
        cli(&["admin", "users", "grant", "erin", "auditor"], "").code,
        0
    );
    let run = cli(&["admin", "users", "list"], "");
    assert!(
        run.stdout.contains("erin") && run.stdout.contains("auditor,developer"),
        "{}",
        run.stdout
    );
    assert_eq!(
        cli(&["admin", "users", "revoke", "erin", "auditor"], "").code,
        0
    );
    let run = cli(&["admin", "users", "create", "erin"], "");
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("already exists"));
    let run = cli(
        &[
            "admin",
            "roles",
            "define",
            "readers",
            "--permission",
            "view_audit_log",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{run:?}");

    // Internal keys: the key is printed by create only.
    let mut ids = Vec::new();
    // The name positionally or as `--name`, as the README writes it.
    for (name, how) in [("one", ""), ("two", "--name"), ("three", "")] {
        let args: &[&str] = if how.is_empty() {
            &["keys", "create", name, "--duration", "7d"]
        } else {
            &["keys", "create", how, name, "--duration", "7d"]
        };
        let run = cli(args, "");
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("will not be shown again"));
        let key = crate::support::find_key(&run.stdout).expect("the key is printed");
        let id = run
            .stdout
            .split_whitespace()
            .find(|w| w.starts_with("key_"))
            .unwrap()
            .to_owned();
        ids.push((id, key));
    }
    let run = cli(&["keys", "list"], "");
    assert_eq!(run.code, 0);
    assert!(run.stdout.starts_with("ID "), "{}", run.stdout);
    for (id, key) in &ids {
        assert!(run.stdout.contains(id.as_str()));
        assert!(!run.stdout.contains(key.as_str()), "the list shows a key");
    }
    let run = cli(&["keys", "delete", &ids[0].0, &ids[1].0, "--yes"], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Deleted 2 keys"), "{}", run.stdout);
    let run = cli(&["keys", "roll", &ids[2].0, "--grace", "1h"], "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(crate::support::find_key(&run.stdout).is_some_and(|k| k != ids[2].1));

    // External keys: secrets from standard input, never arguments.
    let add_aws = |label: &str| {
        cli(
            &[
                "external",
                "add",
                "aws",
                "--label",
                label,
                "--access-key-id",
                "AKIAIOSFODNN7EXAMPLE",
                "--region",
                "eu-west-2",
                "--secret-stdin",
            ],
            &format!("{SECRET}\n"),
        )
    };
    let run = add_aws("bucket");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("AKIA…MPLE"), "{}", run.stdout);
    let run = add_aws("another");
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("delete it first"), "{}", run.stderr);
    let run = cli(
        &[
            "external",
            "add",
            "dnanexus",
            "--label",
            "dx",
            "--secret-stdin",
        ],
        "dxTokenAbcdefghijklmnop1234\n",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = cli(&["external", "list"], "");
    assert!(
        run.stdout.contains("aws") && run.stdout.contains("dnanexus"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(SECRET) && !run.stdout.contains("dxTokenAbcdefghijklmnop1234"));
    let external: Vec<String> = run
        .stdout
        .split_whitespace()
        .filter(|w| w.starts_with("ext_"))
        .map(str::to_owned)
        .collect();
    assert_eq!(external.len(), 2);
    // "Save and test" runs against the provider; here it is a closed local port, so the check
    // is recorded as failed, with the provider's answer, and the command fails (exit 9).
    let run = cli(&["external", "verify", &external[0]], "");
    assert_eq!(run.code, 9, "{run:?}");
    assert!(
        run.stderr.contains("did not pass the check") && run.stderr.contains("was refused"),
        "{run:?}"
    );
    assert!(!run.stdout.contains(SECRET), "{run:?}");
    let run = cli(
        &["external", "delete", &external[0], &external[1], "--yes"],
        "",
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        cli(&["external", "list"], "")
            .stdout
            .contains("No external keys")
    );

    // Logout forgets the key.
    assert_eq!(cli(&["logout"], "").code, 0);
    assert!(!credentials.exists());
    assert_eq!(cli(&["keys", "list"], "").code, 2);
}

#[test]
fn exit_codes_scripts_can_rely_on() {
    let server = Server::start();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let admin = [("KEYLEDGER_API_KEY", server.admin_key.as_str())];
    let run = |args: &[&str], env: &[(&str, &str)]| server.cli(&config, args, "", env);
    let check = |args: &[&str], env: &[(&str, &str)], code: i32, mentions: &str| {
        let result = run(args, env);
        assert_eq!(result.code, code, "{args:?}: {result:?}");
        assert!(result.stderr.contains(mentions), "{args:?}: {result:?}");
        if code != 0 {
            assert!(result.stderr.starts_with("error: "), "{args:?}: {result:?}");
        }
    };

    check(&["keys", "list"], &admin, 0, "");
    check(
        &["keys", "create", "x", "--duration", "0d"],
        &admin,
        1,
        "at least 1 day",
    );
    check(
        &["keys", "frobnicate"],
        &admin,
        1,
        "unrecognized subcommand",
    );
    check(
        &[
            "external",
            "add",
            "aws",
            "--label",
            "x",
            "--access-key-id",
            "AKIA",
            "--region",
            "eu-west-2",
            "--secret-stdin",
        ],
        &admin,
        1,
        "AKIA or ASIA",
    );
    check(
        &["keys", "list"],
        &[("KEYLEDGER_API_KEY", "kl_not_a_key")],
        2,
        "not a keyledger key",
    );
    check(
        &["keys", "delete", "key_0000000000000000"],
        &admin,
        3,
        "was not found",
    );
    check(
        &["admin", "users", "revoke", "admin", "admin"],
        &admin,
        4,
        "last admin",
    );
    check(
        &["keys", "list", "--endpoint", "http://127.0.0.1:9"],
        &admin,
        5,
        "cannot reach",
    );
    check(
        &["admin", "users", "grant", "ghost", "member"],
        &admin,
        3,
        "`ghost` was not found",
    );
    let run = run(&["--help"], &[]);
    assert_eq!(run.code, 0);
    for command in [
        "serve", "admin", "login", "logout", "whoami", "keys", "external",
    ] {
        assert!(
            run.stdout.contains(command),
            "{command} missing from --help"
        );
    }
}
