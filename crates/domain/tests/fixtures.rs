use keyledger_domain::*;

pub const T0: Timestamp = Timestamp::from_millis(1_790_000_000_000);

pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

pub fn role(name: &str) -> RoleName {
    RoleName::parse(name).unwrap()
}

pub fn key_id(n: u32) -> KeyId {
    KeyId::parse(&format!("key_{n:016}")).unwrap()
}

pub fn ext_id(n: u32) -> ExternalKeyId {
    ExternalKeyId::parse(&format!("ext_{n:016}")).unwrap()
}

pub fn as_user(name: &str) -> Actor {
    Actor::User {
        user: user(name),
        key: None,
    }
}

pub fn hash(n: u8) -> SecretHash {
    SecretHash([n; 32])
}

pub fn new_key(n: u32, duration: KeyDuration) -> NewApiKey {
    NewApiKey {
        key: key_id(n),
        name: KeyName::parse(&format!("key {n}")).unwrap(),
        duration,
        hint: KeyHint::mask(&format!("kl_{n:040}"), 7, 4),
        secret_hash: hash(n as u8),
        scope: KeyScope::default(),
    }
}

pub fn aws_key(n: u32) -> NewExternalKey {
    NewExternalKey {
        key: ext_id(n),
        label: Label::parse("lab bucket").unwrap(),
        public: ExternalKeyPublic::Aws {
            access_key_id: AccessKeyId::parse("AKIAIOSFODNN7EXAMPLE").unwrap(),
            region: AwsRegion::parse("eu-west-2").unwrap(),
        },
        sealed: SealedSecret {
            nonce: [7; 12],
            ciphertext: vec![1, 2, 3],
        },
        duration: KeyDuration::Days(30),
    }
}

/// Temporary AWS credentials whose token expires at `token_expires_at`, asked to last 30 days.
pub fn aws_session_key(n: u32, token_expires_at: Timestamp) -> NewExternalKey {
    NewExternalKey {
        public: ExternalKeyPublic::AwsSession {
            access_key_id: AccessKeyId::parse("ASIAIOSFODNN7EXAMPLE").unwrap(),
            region: AwsRegion::parse("eu-west-2").unwrap(),
            token_expires_at,
        },
        ..aws_key(n)
    }
}

pub fn dnanexus_key(n: u32) -> NewExternalKey {
    NewExternalKey {
        key: ext_id(n),
        label: Label::parse("dx").unwrap(),
        public: ExternalKeyPublic::Dnanexus {
            token_hint: KeyHint::mask("abcdefghijklmnopqrstuv", 0, 4),
        },
        sealed: SealedSecret {
            nonce: [8; 12],
            ciphertext: vec![4, 5, 6],
        },
        duration: KeyDuration::Never,
    }
}

/// A world with an admin, a developer `dev` (manages keys), a `member` and an `auditor`.
pub fn world() -> State {
    let mut state = State::default();
    let mut given = |events: Vec<Event>| events.iter().for_each(|e| state.apply(e));
    given(vec![
        Event::UserCreated {
            user: user("admin"),
            display_name: None,
            at: T0,
        },
        Event::RoleGranted {
            user: user("admin"),
            role: role("admin"),
            at: T0,
        },
    ]);
    for (name, r) in [
        ("dev", "developer"),
        ("member", "member"),
        ("auditor", "auditor"),
    ] {
        given(vec![
            Event::UserCreated {
                user: user(name),
                display_name: None,
                at: T0,
            },
            Event::RoleGranted {
                user: user(name),
                role: role(r),
                at: T0,
            },
        ]);
    }
    state
}
