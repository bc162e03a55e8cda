//! An error and its causes as one line of text, for messages and reports.

/// `error` and its chain of sources joined by ": ", like anyhow's `{:#}`, but without repeating a
/// cause that the message above it already quotes (most errors here say "<problem>: <cause>:
/// <file>" and also return the cause as their source).
pub fn chain_text(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::chain_text;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read: {source}: photos/a.jpg")]
    struct Quoting {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Layer {
        message: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        #[derive(Debug, thiserror::Error)]
        #[error("loading the photos")]
        struct Loading(#[source] Quoting);
        let error = Loading(Quoting { source: io });
        assert_eq!(chain_text(&error), "loading the photos: cannot read: no such file: photos/a.jpg");
    }

    #[test]
    fn causes_not_quoted_are_kept() {
        let inner = Layer { message: "inner", source: None };
        let middle = Layer { message: "middle", source: Some(Box::new(inner)) };
        let error = Layer { message: "outer", source: Some(Box::new(middle)) };
        assert_eq!(chain_text(&error), "outer: middle: inner");
    }
}
