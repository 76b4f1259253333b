//! Identifiers as newtypes, so a request id can never be passed where a grant id is meant.
//! On the wire and on screen they carry a letter (`R12`, `G12`, `T3`) that says what they name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("The id of a ", $what, ", shown as `", $prefix, "<number>`.")]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(into = "String", try_from = "String")]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;
            /// Accepts `R12`, `r12` or a bare `12`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                let digits = t.strip_prefix($prefix).or_else(|| t.strip_prefix(&$prefix.to_ascii_lowercase())).unwrap_or(t);
                match digits.parse::<u64>() {
                    Ok(n) if n > 0 && !digits.starts_with('+') => Ok($name(n)),
                    _ => Err(format!(
                        "'{}' is not a {} id: expected {}<number>, for example {}7",
                        text_for_error(s),
                        $what,
                        $prefix,
                        $prefix
                    )),
                }
            }
        }

        // On the wire: a string such as `R12` (what serde writes through `String`).
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "[1-9][0-9]*$")))
                    .examples([concat!($prefix, "12")])
                    .description(Some(concat!("The id of a ", $what, ".")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
    };
}

prefixed_id!(RequestId, "R", "request");
prefixed_id!(GrantId, "G", "grant");
prefixed_id!(TokenId, "T", "token");
prefixed_id!(RunId, "X", "run");

impl RequestId {
    /// A request has at most one grant, so the grant shares its number: R12 becomes G12.
    pub fn grant(self) -> GrantId {
        GrantId(self.0)
    }
}

impl GrantId {
    pub fn request(self) -> RequestId {
        RequestId(self.0)
    }
}

fn text_for_error(s: &str) -> String {
    super::text::inert(&s.chars().take(40).collect::<String>()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_or_without_their_letter() {
        assert_eq!("R12".parse::<RequestId>().unwrap(), RequestId(12));
        assert_eq!("r12".parse::<RequestId>().unwrap(), RequestId(12));
        assert_eq!("12".parse::<RequestId>().unwrap(), RequestId(12));
        assert_eq!("G3".parse::<GrantId>().unwrap(), GrantId(3));
        let err = "G3".parse::<RequestId>().unwrap_err();
        assert!(err.contains("not a request id"), "{err}");
        assert!("0".parse::<RequestId>().is_err());
        assert!("+5".parse::<RequestId>().is_err());
        assert!("R-5".parse::<RequestId>().is_err());
    }

    #[test]
    fn ids_round_trip_through_json_as_strings() {
        let json = serde_json::to_string(&GrantId(9)).unwrap();
        assert_eq!(json, "\"G9\"");
        assert_eq!(serde_json::from_str::<GrantId>(&json).unwrap(), GrantId(9));
        assert!(serde_json::from_str::<GrantId>("\"R9\"").is_err());
    }
}
