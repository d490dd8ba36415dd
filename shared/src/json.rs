//! One JSON reading for what was verified.
//!
//! `serde_json` keeps the *last* value of a repeated object key when it reads
//! into a [`serde_json::Value`] or a map, and derived structs with `flatten` or
//! aliases can do the same. A verifier and a translator that read the same
//! signed bytes must never see different values, so every piece of
//! authenticated JSON (store-signed content, store API answers, Pub/Sub
//! message data) is read through [`from_slice`] / [`from_str`] here: a
//! document with a repeated key at any depth is refused as a whole.

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Nesting limit of the duplicate-key check (serde_json's own limit is 128).
const MAX_DEPTH: usize = 128;

/// How this module's refusals begin (their text names at most 40 characters
/// of a key, never a value, so it may be logged).
const REPEATED_KEY: &str = "duplicate object key";
const TOO_DEEP: &str = "JSON nested too deeply";

/// Whether `e` is this module's own refusal — a repeated key or nesting
/// beyond the check's limit — rather than ordinary malformed JSON. Its text is
/// safe to log (no values).
pub fn is_strict_refusal(e: &serde_json::Error) -> bool {
    is_repeated_key(e) || e.to_string().starts_with(TOO_DEEP)
}

/// Whether `e` is this module's refusal of a repeated key.
pub fn is_repeated_key(e: &serde_json::Error) -> bool {
    e.to_string().starts_with(REPEATED_KEY)
}

/// For a repeated-key refusal, the text API clients report (position only,
/// no content); `None` for any other error.
pub fn repeated_key_refusal(e: &serde_json::Error) -> Option<String> {
    is_repeated_key(e).then(|| {
        format!(
            "a key is repeated (line {} column {}): refused",
            e.line(),
            e.column()
        )
    })
}

/// Reads `bytes` as `T`, refusing a document in which any object repeats a key.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    check_unique_keys(bytes)?;
    serde_json::from_slice(bytes)
}

/// [`from_slice`] for text.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    from_slice(text.as_bytes())
}

/// Refuses a JSON document in which any object, at any depth, repeats a key
/// (compared after unescaping, so `"a"` and `"\u0061"` are the same key).
/// Also refuses anything that is not exactly one JSON document.
pub fn check_unique_keys(bytes: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    UniqueKeys { depth: 0 }.deserialize(&mut de)?;
    de.end()
}

struct UniqueKeys {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.nested::<A::Error>()?;
        while seq.next_element_seed(UniqueKeys { depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.nested::<A::Error>()?;
        // Keys are borrowed from the input when they hold no escape (the
        // usual case), and compared linearly while the object is small: no
        // allocation or hashing per key. Large objects switch to a set.
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        let mut many: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let repeated = match &many {
                Some(set) => set.contains(&key),
                None => seen.contains(&key),
            };
            if repeated {
                return Err(de::Error::custom(format_args!(
                    "{REPEATED_KEY} {:?}",
                    truncate(&key)
                )));
            }
            match &mut many {
                Some(set) => {
                    set.insert(key);
                }
                None if seen.len() < LINEAR_KEYS => seen.push(key),
                None => {
                    let mut set: HashSet<Cow<'de, str>> = seen.drain(..).collect();
                    set.insert(key);
                    many = Some(set);
                }
            }
            map.next_value_seed(UniqueKeys { depth })?;
        }
        Ok(())
    }
}

/// Objects with at most this many keys are checked by linear comparison.
const LINEAR_KEYS: usize = 32;

/// An object key, borrowed from the input when it holds no escape.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl UniqueKeys {
    fn nested<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(self.depth + 1)
    }
}

/// A key as shown in an error: at most 40 characters.
fn truncate(key: &str) -> String {
    key.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        for doc in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"productId":"p1","productId":"p2"}}"#,
            r#"[{"k":1},{"k":1,"k":1}]"#,
            r#"{"a":1,"\u0061":2}"#,
        ] {
            let e = from_str::<Value>(doc).unwrap_err();
            assert!(e.to_string().contains("duplicate object key"), "{doc}: {e}");
            assert!(is_repeated_key(&e) && is_strict_refusal(&e));
        }
    }

    #[test]
    fn large_objects_are_checked_too() {
        // Past LINEAR_KEYS the check switches from a list to a set: both halves.
        let keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let doc = format!("{{{}}}", keys.join(","));
        let v: Value = from_str(&doc).unwrap();
        assert_eq!(v["k99"], 99);
        for repeat in ["k5", "k40", "k99"] {
            let doc = format!("{{{},\"{repeat}\":0}}", keys.join(","));
            let e = from_str::<Value>(&doc).unwrap_err();
            assert!(is_repeated_key(&e), "{repeat}: {e}");
        }
        // An escaped spelling of a key already seen, in the set half.
        let doc = format!("{{{},\"k\\u0039\":0}}", keys.join(","));
        assert!(is_repeated_key(&from_str::<Value>(&doc).unwrap_err()));
    }

    #[test]
    fn unique_keys_read_as_usual() {
        let v: Value = from_str(r#"{"a":1,"b":{"a":[1,{"a":2}]},"c":"\u0061"}"#).unwrap();
        assert_eq!(v["b"]["a"][1]["a"], 2);
        assert_eq!(v["c"], "a");
    }

    #[test]
    fn trailing_data_and_bad_json_are_refused() {
        assert!(from_str::<Value>(r#"{"a":1} {"a":2}"#).is_err());
        let e = from_str::<Value>(r#"{"a":"#).unwrap_err();
        assert!(
            !is_strict_refusal(&e),
            "plain malformed JSON is not a strict refusal"
        );
        assert!(check_unique_keys(b"").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let doc = "[".repeat(10_000) + &"]".repeat(10_000);
        let e = check_unique_keys(doc.as_bytes()).unwrap_err();
        assert!(!is_repeated_key(&e));
    }
}
