//! How addresses, topics and records are named in NATS: KV keys and subjects allow only a few
//! characters, while object names and topics may hold any.

use switchboard_runtime::Address;

/// One part of a key: itself when it is made of safe characters (`r` + text), its UTF-8 bytes
/// in hex otherwise (`x` + hex), so every string has exactly one encoding.
fn part(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if safe {
        format!("r{text}")
    } else {
        let mut out = String::with_capacity(1 + 2 * text.len());
        out.push('x');
        for b in text.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

fn unpart(encoded: &str) -> Option<String> {
    if let Some(text) = encoded.strip_prefix('r') {
        return Some(text.to_string());
    }
    let hex = encoded.strip_prefix('x')?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The KV key of an object.
pub(crate) fn address_key(address: &Address) -> String {
    format!("{}.{}", part(&address.class), part(&address.name))
}

/// The object a KV key names.
pub(crate) fn key_address(key: &str) -> Option<Address> {
    let (class, name) = key.split_once('.')?;
    Some(Address::new(&unpart(class)?, &unpart(name)?))
}

/// A subject token for a topic: FNV-1a of its name, stable across builds and machines. Two
/// topics that share a token only cost a node a publication it has no subscriber for.
pub(crate) fn topic_token(topic: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Whether `id` can name a node: it becomes a subject token and a KV value.
pub(crate) fn valid_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_has_one_key_and_comes_back() {
        for (class, name) in [
            ("counter", "visits"),
            ("display", "a b/c.d"),
            ("rooms", ""),
            ("k", "é*>"),
        ] {
            let address = Address::new(class, name);
            let key = address_key(&address);
            assert!(
                key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{key}"
            );
            assert_eq!(key_address(&key), Some(address));
        }
        assert_ne!(
            address_key(&Address::new("c", "x61")),
            address_key(&Address::new("c", "a"))
        );
    }

    #[test]
    fn topic_tokens_are_stable() {
        assert_eq!(topic_token(""), "cbf29ce484222325");
        assert_ne!(topic_token("room:1"), topic_token("room:2"));
    }
}
