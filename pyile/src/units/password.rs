//! Where a binary's password comes from: a file, else a value (a flag or `PYILE_PASSWORD`).

use std::io;
use std::path::{Path, PathBuf};

/// The environment variable the binaries read the password from (through their
/// `--password` flag's clap `env`, so `--help` shows it).
pub const PASSWORD_ENV: &str = "PYILE_PASSWORD";

/// Why no password could be had.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password file could not be read.
    #[error("cannot read the password file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (shown in the message, so not a `source`: one line either way).
        error: io::Error,
    },
    /// The password file holds nothing but line ends.
    #[error("the password file {} is empty", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// Neither a file nor a (non-empty) value.
    #[error("no password: give --password-file FILE, set {PASSWORD_ENV}, or give --password")]
    Missing,
}

/// The password: the contents of `file` if given (trailing `\n` / `\r\n` removed; an empty
/// file is an error, not a fallback), else `value` (the `--password` flag, or
/// [`PASSWORD_ENV`] as the binary's clap read it; empty counts as absent).
pub fn resolve_password(file: Option<&Path>, value: Option<&str>) -> Result<String, PasswordError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|error| PasswordError::Read { path: path.into(), error })?;
        let password = text.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(PasswordError::EmptyFile { path: path.into() });
        }
        return Ok(password.to_owned());
    }
    match value {
        Some(password) if !password.is_empty() => Ok(password.to_owned()),
        _ => Err(PasswordError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for this test's files, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("pyile-units-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_file_wins_and_loses_its_trailing_newline() {
        let dir = TempDir::new("file");
        let plain = dir.file("plain", "from-file");
        let lf = dir.file("lf", "from-file\n");
        let crlf = dir.file("crlf", "from-file\r\n");
        let inner = dir.file("inner", " two words \nsecond line\n\n");
        for path in [&plain, &lf, &crlf] {
            assert_eq!(resolve_password(Some(path), Some("flag")).unwrap(), "from-file");
            assert_eq!(resolve_password(Some(path), None).unwrap(), "from-file");
        }
        // Only line ends at the very end go; spaces and inner lines are the password's.
        assert_eq!(resolve_password(Some(&inner), None).unwrap(), " two words \nsecond line");
    }

    #[test]
    fn an_empty_file_is_an_error_not_a_fallback() {
        let dir = TempDir::new("empty");
        for contents in ["", "\n", "\r\n\n"] {
            let path = dir.file("pw", contents);
            let e = resolve_password(Some(&path), Some("flag")).unwrap_err();
            assert!(matches!(e, PasswordError::EmptyFile { .. }), "{contents:?}: {e:?}");
            assert_eq!(e.to_string(), format!("the password file {} is empty", path.display()));
        }
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_a_fallback() {
        let e = resolve_password(Some(Path::new("/nonexistent/pyile/pw")), Some("flag")).unwrap_err();
        assert!(matches!(e, PasswordError::Read { .. }), "{e:?}");
        assert!(e.to_string().starts_with("cannot read the password file /nonexistent/pyile/pw: "), "{e}");
    }

    #[test]
    fn without_a_file_the_flag_or_environment_value_is_used() {
        assert_eq!(resolve_password(None, Some("from-env-or-flag")).unwrap(), "from-env-or-flag");
        // Kept as given: a value is not a file, nothing is trimmed.
        assert_eq!(resolve_password(None, Some("pw\n")).unwrap(), "pw\n");
        for value in [None, Some("")] {
            let e = resolve_password(None, value).unwrap_err();
            assert!(matches!(e, PasswordError::Missing));
            assert_eq!(e.to_string(), "no password: give --password-file FILE, set PYILE_PASSWORD, or give --password");
        }
    }
}
