// The one rule for names slmstore takes from outside and uses as file names or prints bare.

/// Names that print plainly and can stand as a file name: 1 to `maxBytes` characters of
/// [A-Za-z0-9._-] (remote ids, device report file names).
public enum PlainName {
    /// Whether `s` is 1 to `maxBytes` characters of [A-Za-z0-9._-].
    public static func isPlain(_ s: String, maxBytes: Int) -> Bool {
        !s.isEmpty && s.utf8.count <= maxBytes && s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f || c == 0x2d
        }
    }
}
