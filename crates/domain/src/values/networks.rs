//! What a scoped key may do and from where: its scopes (a subset of its owner's permissions)
//! and the client networks it is allowed from (decision 0026).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ValidationError;
use crate::permissions::{Permission, PermissionSet};

/// A client network, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a network of one.
/// Host bits are cleared when parsed, so `10.1.2.3/8` is `10.0.0.0/8`. Stored and shown in that
/// text form (in the log too: one readable string, parsed again when read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(raw: &str) -> Result<Network, ValidationError> {
        let invalid = || {
            ValidationError::new(
                "networks",
                "not a network: use an address with a prefix length, as `203.0.113.0/24` or \
                 `2001:db8::/32`, or a single address",
            )
        };
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let width = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix = match prefix {
            None => width,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= width)
                    .ok_or_else(|| {
                        ValidationError::new(
                            "networks",
                            format!("a prefix length is at most {width} for this address"),
                        )
                    })?
            }
            Some(_) => return Err(invalid()),
        };
        Ok(Network {
            address: mask(address, prefix),
            prefix,
        })
    }

    /// Whether `client` is in this network. An IPv4 client seen as an IPv4-mapped IPv6 address
    /// (`::ffff:192.0.2.1`, what a dual-stack socket reports) is judged as IPv4.
    pub fn contains(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        match (self.address, client) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(client, self.prefix) == self.address
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Network::parse(&text).map_err(|err| serde::de::Error::custom(err.message))
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// What a key may do beyond being its owner's: `None` scopes is every permission the owner
/// holds; empty `networks` is any client address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyScope {
    pub scopes: Option<PermissionSet>,
    pub networks: Vec<Network>,
}

impl KeyScope {
    /// At most this many networks per key.
    pub const MAX_NETWORKS: usize = 32;

    /// Parses the scopes and networks a create request names. `scopes: Some(empty)` is refused:
    /// a key that may do nothing is a mistake (leave the field out for an unscoped key).
    pub fn parse(
        scopes: Option<&[String]>,
        networks: Option<&[String]>,
    ) -> Result<KeyScope, ValidationError> {
        let scopes = match scopes {
            None => None,
            Some([]) => {
                return Err(ValidationError::new(
                    "scopes",
                    "name at least one permission, or leave `scopes` out for a key with all of \
                     your permissions",
                ));
            }
            Some(raw) => Some(
                raw.iter()
                    .map(|p| {
                        Permission::parse(p)
                            .map_err(|err| ValidationError::new("scopes", err.message))
                    })
                    .collect::<Result<PermissionSet, _>>()?,
            ),
        };
        let networks = networks.unwrap_or_default();
        if networks.len() > Self::MAX_NETWORKS {
            return Err(ValidationError::new(
                "networks",
                format!("at most {} networks per key", Self::MAX_NETWORKS),
            ));
        }
        // The entry at fault is named by its place, never quoted: refusals echo nothing sent.
        let listed = networks.len();
        let mut networks = networks
            .iter()
            .enumerate()
            .map(|(index, n)| {
                Network::parse(n).map_err(|error| match listed {
                    1 => error,
                    _ => ValidationError::new(
                        "networks",
                        format!("entry {} of {listed}: {}", index + 1, error.message),
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        networks.sort();
        networks.dedup();
        Ok(KeyScope { scopes, networks })
    }

    pub fn is_unrestricted(&self) -> bool {
        self.scopes.is_none() && self.networks.is_empty()
    }

    /// Whether a client at `client` may use the key.
    pub fn admits(networks: &[Network], client: IpAddr) -> bool {
        networks.is_empty() || networks.iter().any(|n| n.contains(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expect: Result<&str, &str>) {
        let got = Network::parse(raw).map(|n| n.to_string());
        match expect {
            Ok(text) => assert_eq!(got.as_deref(), Ok(text), "{raw}"),
            Err(fragment) => {
                let message = got.unwrap_err().message;
                assert!(message.contains(fragment), "{raw}: {message}");
            }
        }
    }

    #[test]
    fn networks_parse_and_normalise() {
        check("203.0.113.0/24", Ok("203.0.113.0/24"));
        check("203.0.113.77/24", Ok("203.0.113.0/24"));
        check("10.1.2.3", Ok("10.1.2.3/32"));
        check("0.0.0.0/0", Ok("0.0.0.0/0"));
        check("2001:db8::1/32", Ok("2001:db8::/32"));
        check("::1", Ok("::1/128"));
        check("10.0.0.0/33", Err("at most 32"));
        check("2001:db8::/129", Err("at most 128"));
        check("10.0.0.0/", Err("not a network"));
        check("10.0.0.0/-1", Err("not a network"));
        check("example.com/8", Err("not a network"));
        check("", Err("not a network"));
    }

    #[test]
    fn membership() {
        let net = Network::parse("203.0.113.0/24").unwrap();
        assert!(net.contains("203.0.113.9".parse().unwrap()));
        assert!(net.contains("::ffff:203.0.113.9".parse().unwrap()));
        assert!(!net.contains("203.0.114.9".parse().unwrap()));
        assert!(!net.contains("2001:db8::1".parse().unwrap()));
        let any = Network::parse("0.0.0.0/0").unwrap();
        assert!(any.contains("198.51.100.1".parse().unwrap()));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(KeyScope::admits(&[], "192.0.2.1".parse().unwrap()));
    }
}
