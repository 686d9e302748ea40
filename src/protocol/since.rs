//! `since`: where a resuming client left off on a channel — the channel's epoch and the
//! sequence number of the last event it handled.

use serde_json::value::RawValue;
use serde_json::Value;

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A client's position on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub epoch: String,
    pub seq: u64,
}

impl Since {
    /// `{ "epoch": non-empty string, "seq": integer >= 0 }`; anything else is `None`.
    pub fn parse(raw: &RawValue) -> Option<Self> {
        let Ok(Value::Object(members)) = serde_json::from_str::<Value>(raw.get()) else {
            return None;
        };
        let epoch = match members.get("epoch") {
            Some(Value::String(epoch)) if !epoch.is_empty() => epoch.clone(),
            _ => return None,
        };
        let seq = match members.get("seq") {
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(seq), _) => seq,
                (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 => f as u64,
                _ => return None,
            },
            _ => return None,
        };
        (seq <= MAX_SAFE_INTEGER).then_some(Self { epoch, seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<Since> {
        serde_json::from_str::<&RawValue>(text)
            .ok()
            .and_then(Since::parse)
    }

    #[test]
    fn accepts_an_epoch_and_a_whole_non_negative_seq() {
        assert_eq!(
            parse(r#"{"epoch":"k3f9","seq":57}"#),
            Some(Since {
                epoch: "k3f9".into(),
                seq: 57
            })
        );
        assert_eq!(
            parse(r#"{"seq":0,"epoch":"e","x":1}"#).map(|s| s.seq),
            Some(0)
        );
        assert_eq!(parse(r#"{"epoch":"e","seq":3.0}"#).map(|s| s.seq), Some(3));
    }

    #[test]
    fn refuses_everything_else() {
        for text in [
            "null",
            "5",
            r#""e""#,
            "[]",
            r#"{"epoch":"e"}"#,
            r#"{"seq":1}"#,
            r#"{"epoch":"","seq":1}"#,
            r#"{"epoch":5,"seq":1}"#,
            r#"{"epoch":"e","seq":-1}"#,
            r#"{"epoch":"e","seq":1.5}"#,
            r#"{"epoch":"e","seq":"1"}"#,
            r#"{"epoch":"e","seq":1e300}"#,
            r#"{"epoch":"e","seq":9007199254740992}"#,
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
