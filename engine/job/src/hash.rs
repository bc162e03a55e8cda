//! Content hashes (SHA-256, lower-case hex): of input files, so a job and the watcher know when
//! photos changed, and of settings, so a stage knows whether its finished output still applies.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::JobError;

/// Bytes read per call while hashing a file: large enough that system calls do not dominate,
/// small enough to stay in cache.
const READ_CHUNK: usize = 1 << 16;

/// SHA-256 of the file's content, hex.
pub fn hash_file(path: &Path) -> Result<String, JobError> {
    let io_error = |source| JobError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_CHUNK];
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e)),
        };
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of `bytes`, hex.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of the JSON form of `parts` (a stage's inputs and settings), hex. Struct fields
/// serialise in declaration order and maps sorted, so equal values give equal hashes.
pub(crate) fn hash_json(parts: &serde_json::Value) -> String {
    hash_bytes(parts.to_string().as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_published_test_vectors() {
        // FIPS 180-2 appendix B.1 and the empty message.
        assert_eq!(hash_bytes(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hash_bytes(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn file_hash_equals_the_hash_of_its_bytes_across_chunks() {
        let dir = std::env::temp_dir().join(format!("kiln-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data.bin");
        let bytes: Vec<u8> = (0..READ_CHUNK * 2 + 17).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(hash_file(&path).unwrap(), hash_bytes(&bytes));
        assert!(matches!(hash_file(&dir.join("missing")), Err(JobError::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
