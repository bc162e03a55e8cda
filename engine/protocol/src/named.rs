//! `Display` and `FromStr` for the protocol's named enums, by their `name()`: one spelling for
//! flags, files and messages, and one error text for an unknown name.

/// Implements `Display` (the `name()`) and a trimmed, case-insensitive `FromStr` over `$all`
/// whose error lists every name; `$what` names the kind in that error.
macro_rules! named_enum {
    ($type:ty, $all:expr, $what:literal) => {
        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $type {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let wanted = text.trim().to_ascii_lowercase();
                $all.into_iter().find(|v| v.name() == wanted).ok_or_else(|| {
                    let names: Vec<&str> = $all.iter().map(|v| v.name()).collect();
                    format!("unknown {} {text:?}: expected one of {}", $what, names.join(", "))
                })
            }
        }
    };
}
