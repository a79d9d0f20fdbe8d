//! Fixtures shared by the connector tests.

use std::time::Duration;

use keyledger_connect_dnanexus::{
    DnanexusError, DnanexusOptions, DnanexusSource, DnanexusToken, RemoteFile,
};
use keyledger_testkit::dnanexus::{DnanexusEmulator, Seed};

/// The token every fixture uses. Tests check it never shows up in any error text.
pub const CANARY_TOKEN: &str = "CANARY-dx-token-5f1e0c9b7a";
pub const USER: &str = "user-ada";
pub const KIB: u64 = 1 << 10;

/// A seed with user `ada` holding [`CANARY_TOKEN`] and one project; returns its id too.
pub fn seed(project_name: &str) -> (Seed, String) {
    let mut seed = Seed::new();
    let user = seed.add_user("ada");
    seed.add_token(&user, CANARY_TOKEN);
    let project = seed.add_project(project_name, &user);
    (seed, project)
}

/// Options that keep retries fast: backoff (and `Retry-After`) capped at 20 ms.
pub fn fast_options(emulator: &DnanexusEmulator) -> DnanexusOptions {
    DnanexusOptions {
        api_url: emulator.endpoint(),
        concurrency: 4,
        chunk_size: 64 * KIB,
        max_attempts: 5,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        list_page_size: 1000,
    }
}

pub fn source(emulator: &DnanexusEmulator) -> DnanexusSource {
    source_with(emulator, fast_options(emulator), CANARY_TOKEN)
}

pub fn source_with(
    _emulator: &DnanexusEmulator,
    options: DnanexusOptions,
    token: &str,
) -> DnanexusSource {
    DnanexusSource::new(&DnanexusToken(token.to_owned()), &options).expect("valid options")
}

/// Fails the test if the token appears in the error's message or Debug output.
pub fn assert_no_secret(error: &DnanexusError) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(CANARY_TOKEN), "the token leaked: {shown}");
}

/// The one file of a listing with this name.
pub fn named<'a>(files: &'a [RemoteFile], name: &str) -> &'a RemoteFile {
    files
        .iter()
        .find(|file| file.location.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}
