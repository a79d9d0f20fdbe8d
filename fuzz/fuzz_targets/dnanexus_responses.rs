//! What the DNAnexus API answers, as the connector reads it: `findDataObjects` pages (files,
//! parts, folders), error bodies (mapped and redacted) and `Retry-After`. The first byte picks
//! which; the rest is the body or header value.
#![no_main]

use std::sync::OnceLock;

use keyledger_connect_dnanexus::fuzzing::{
    FUZZ_TOKEN, api_error, find_data_objects_page, retry_delay,
};
use libfuzzer_sys::fuzz_target;
use regex::Regex;

const FOLDERS: [&str; 4] = ["/", "/reads", "/reads/", "/a/b"];

fn everything() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| Regex::new(".*").expect("a valid pattern"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let folder = FOLDERS[usize::from(selector / 3) % FOLDERS.len()];
            if let Ok((files, _next)) = find_data_objects_page(rest, folder, everything()) {
                for file in files {
                    let total: u64 = file.location.parts.iter().map(|part| part.size).sum();
                    assert_eq!(total, file.size);
                    assert!(
                        file.location.parts
                            .windows(2)
                            .all(|pair| pair[0].index <= pair[1].index)
                    );
                }
            }
        }
        1 => {
            let (status, body) = match rest.split_first_chunk::<2>() {
                Some((status, body)) => (u16::from_be_bytes(*status), body),
                None => (500, rest),
            };
            let error = api_error(status, body).to_string();
            assert!(!error.contains(FUZZ_TOKEN), "the token is echoed: {error}");
        }
        _ => {
            let attempt = u32::from(selector / 3);
            if let Some(delay) = retry_delay(rest, attempt) {
                assert!(delay.as_secs() <= 24 * 3600, "{delay:?}");
            }
        }
    }
});
