// A model's name: lowercase letters, digits, '-', '_', '.', and '/' between namespace segments.

public struct ModelName: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: String

    public init(_ text: String) throws {
        guard !text.isEmpty, text.utf8.count <= 200 else {
            throw SLMError.argument("invalid model name \"\(text)\": must be 1 to 200 characters")
        }
        for segment in text.split(separator: "/", omittingEmptySubsequences: false) {
            guard let first = segment.utf8.first else {
                throw SLMError.argument("invalid model name \"\(text)\": empty segment between '/'")
            }
            guard (0x61...0x7a).contains(first) || (0x30...0x39).contains(first) else {
                throw SLMError.argument("invalid model name \"\(text)\": each segment must start with a lowercase letter or digit")
            }
            for c in segment.utf8 {
                let ok = (0x61...0x7a).contains(c) || (0x30...0x39).contains(c) || c == 0x2d || c == 0x5f || c == 0x2e
                guard ok else {
                    throw SLMError.argument("invalid model name \"\(text)\": only lowercase letters, digits, '-', '_', '.' and '/' are allowed")
                }
            }
        }
        value = text
    }

    public var description: String { value }
    public static func < (a: ModelName, b: ModelName) -> Bool { a.value < b.value }
}
