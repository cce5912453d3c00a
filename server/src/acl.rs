//! Access control: checking a node's ACL against a session's identities, the digest scheme, and
//! turning a client's requested ACL into the one stored (`auth` expanded, ids validated).
//! Pure: used by prep on the Zab core and by reads on the shards.

use base64::Engine;
use sha1::{Digest, Sha1};
use zinc_protocol::{perms, Acl, ErrorCode, Id};

/// The identity of the configured super user; it passes every check.
pub fn super_id() -> Id {
    Id::new("super", "")
}

/// `user:password` -> `user:base64(sha1(user:password))`, the stored form of a digest id.
pub fn digest_id(user_password: &str) -> Option<String> {
    let (user, _) = user_password.split_once(':')?;
    let hash = Sha1::digest(user_password.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(hash);
    Some(format!("{user}:{encoded}"))
}

/// Whether `ids` (a session's identities) grant `perm` on a node with `acl`.
pub fn allows(acl: &[Acl], perm: i32, ids: &[Id]) -> bool {
    if acl.is_empty() || ids.iter().any(|id| id.scheme == "super") {
        return true;
    }
    acl.iter()
        .filter(|entry| entry.perms & perm != 0)
        .any(|entry| {
            if entry.id.scheme == "world" && entry.id.id == "anyone" {
                return true;
            }
            ids.iter()
                .filter(|id| id.scheme == entry.id.scheme)
                .any(|id| id_matches(&entry.id.scheme, &id.id, &entry.id.id))
        })
}

fn id_matches(scheme: &str, session_id: &str, acl_id: &str) -> bool {
    match scheme {
        "ip" => ip_matches(session_id, acl_id),
        _ => session_id == acl_id,
    }
}

/// `acl_id` is an address or `address/bits`; `client` an address.
fn ip_matches(client: &str, acl_id: &str) -> bool {
    let (network, bits) = match acl_id.split_once('/') {
        Some((network, bits)) => (network, bits.parse::<u32>().ok()),
        None => (acl_id, None),
    };
    match (
        client.parse::<std::net::IpAddr>(),
        network.parse::<std::net::IpAddr>(),
    ) {
        (Ok(std::net::IpAddr::V4(c)), Ok(std::net::IpAddr::V4(n))) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(c) & mask == u32::from(n) & mask
        }
        (Ok(std::net::IpAddr::V6(c)), Ok(std::net::IpAddr::V6(n))) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(c) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn valid_id(id: &Id) -> bool {
    match id.scheme.as_str() {
        "world" => id.id == "anyone",
        "digest" => id.id.split(':').count() == 2,
        "ip" => {
            let (network, bits) = match id.id.split_once('/') {
                Some((network, bits)) => (network, Some(bits)),
                None => (id.id.as_str(), None),
            };
            network.parse::<std::net::IpAddr>().is_ok()
                && bits.is_none_or(|bits| bits.parse::<u8>().is_ok())
        }
        "super" => true,
        _ => false,
    }
}

/// The ACL to store for a create or setACL: `auth` entries become the session's authenticated
/// ids; every id must be valid for its scheme; duplicates are dropped. Errors are InvalidACL.
pub fn fixup(requested: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    if requested.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut stored: Vec<Acl> = Vec::with_capacity(requested.len());
    for entry in requested {
        if entry.perms & !perms::ALL != 0 {
            return Err(ErrorCode::InvalidAcl);
        }
        if entry.id.scheme == "auth" {
            let mut any = false;
            for id in ids.iter().filter(|id| is_authenticated_scheme(&id.scheme)) {
                push_unique(
                    &mut stored,
                    Acl {
                        perms: entry.perms,
                        id: id.clone(),
                    },
                );
                any = true;
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else if valid_id(&entry.id) {
            push_unique(&mut stored, entry.clone());
        } else {
            return Err(ErrorCode::InvalidAcl);
        }
    }
    Ok(stored)
}

/// Schemes whose ids prove who the client is (the ones `auth` ACLs expand to).
fn is_authenticated_scheme(scheme: &str) -> bool {
    matches!(scheme, "digest" | "super")
}

fn push_unique(acl: &mut Vec<Acl>, entry: Acl) {
    if !acl.contains(&entry) {
        acl.push(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id::new(scheme, id),
        }
    }

    #[test]
    fn digest_matches_zookeeper_form() {
        // The digest ZooKeeper documents for super:test (DigestAuthenticationProvider).
        assert_eq!(
            digest_id("super:test").as_deref(),
            Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
        );
        assert_eq!(digest_id("no-colon"), None);
    }

    #[test]
    fn checks_follow_schemes() {
        let ids = vec![Id::new("ip", "10.1.2.3"), Id::new("digest", "u:h")];
        assert!(allows(&Acl::open_unsafe(), perms::WRITE, &[]));
        assert!(allows(
            &[acl(perms::READ, "ip", "10.1.0.0/16")],
            perms::READ,
            &ids
        ));
        assert!(!allows(
            &[acl(perms::READ, "ip", "10.2.0.0/16")],
            perms::READ,
            &ids
        ));
        assert!(allows(
            &[acl(perms::ALL, "digest", "u:h")],
            perms::DELETE,
            &ids
        ));
        assert!(!allows(
            &[acl(perms::READ, "digest", "u:h")],
            perms::WRITE,
            &ids
        ));
        assert!(allows(
            &[acl(perms::READ, "digest", "x:y")],
            perms::ADMIN,
            &[super_id()]
        ));
    }

    #[test]
    fn fixup_expands_auth_and_rejects_bad_ids() {
        let ids = vec![Id::new("ip", "127.0.0.1"), Id::new("digest", "u:h")];
        assert_eq!(
            fixup(&Acl::creator_all(), &ids),
            Ok(vec![acl(perms::ALL, "digest", "u:h")])
        );
        assert_eq!(
            fixup(&Acl::creator_all(), &ids[..1]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup(&[], &ids), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup(&[acl(1, "world", "someone")], &ids),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup(&[acl(1, "ip", "300.1.1.1")], &ids),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup(&[acl(1, "nope", "x")], &ids),
            Err(ErrorCode::InvalidAcl)
        );
        let twice = [acl(1, "world", "anyone"), acl(1, "world", "anyone")];
        assert_eq!(fixup(&twice, &ids).map(|a| a.len()), Ok(1));
    }
}
