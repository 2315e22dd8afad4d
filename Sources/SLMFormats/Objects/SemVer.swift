// Semantic Versioning 2.0.0: strict parsing and precedence (pre-releases before their
// release, build metadata ignored for precedence but kept as part of the version's name).

/// A semantic version (SemVer 2.0.0), strictly parsed.
public struct SemVer: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// MAJOR: incompatible changes.
    public let major: UInt64
    /// MINOR: compatible additions.
    public let minor: UInt64
    /// PATCH: compatible fixes.
    public let patch: UInt64
    /// Pre-release identifiers (after `-`); a pre-release sorts before its release.
    public let prerelease: [String]
    /// Build metadata (after `+`): part of the name, not of the order.
    public let build: [String]

    /// A version from its parts (not checked: parse text with `init(_:)`).
    public init(major: UInt64, minor: UInt64, patch: UInt64, prerelease: [String] = [], build: [String] = []) {
        self.major = major
        self.minor = minor
        self.patch = patch
        self.prerelease = prerelease
        self.build = build
    }

    /// Parses `text` strictly; the error says what is wrong with it.
    public init(_ text: String) throws {
        self = try Self.parsed(text).get()
    }

    /// Parses `text` strictly; nil when it is not a semantic version (for the many places where
    /// "not a version" means "skip it", such as directory entries and manifest keys).
    public init?(parsing text: String) {
        guard case .success(let v) = Self.parsed(text) else { return nil }
        self = v
    }

    private static func parsed(_ text: String) -> Result<SemVer, SLMError> {
        do { return .success(try parse(text)) } catch let e as SLMError { return .failure(e) } catch { return .failure(.argument("\(error)")) }
    }

    private static func parse(_ text: String) throws -> SemVer {
        func bad(_ why: String) -> SLMError { .argument("invalid version \"\(text)\": \(why) (expected SemVer like 1.2.0 or 2.0.0-rc.1)") }
        guard text.utf8.count <= 128 else { throw bad("too long") }
        var rest = Substring(text)
        var build: [String] = []
        if let plus = rest.firstIndex(of: "+") {
            build = rest[rest.index(after: plus)...].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            rest = rest[..<plus]
            guard build.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(SemVer.isIdentifierChar) }) else { throw bad("bad build metadata") }
        }
        var pre: [String] = []
        if let dash = rest.firstIndex(of: "-") {
            pre = rest[rest.index(after: dash)...].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            rest = rest[..<dash]
            for id in pre {
                guard !id.isEmpty, id.utf8.allSatisfy(SemVer.isIdentifierChar) else { throw bad("bad pre-release identifier") }
                if id.utf8.allSatisfy({ (0x30...0x39).contains($0) }), id.count > 1, id.hasPrefix("0") {
                    throw bad("numeric pre-release identifier with a leading zero")
                }
            }
        }
        let core = rest.split(separator: ".", omittingEmptySubsequences: false)
        guard core.count == 3 else { throw bad("need MAJOR.MINOR.PATCH") }
        var nums: [UInt64] = []
        for part in core {
            guard !part.isEmpty, part.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { throw bad("\"\(part)\" is not a number") }
            guard part == "0" || !part.hasPrefix("0") else { throw bad("leading zero in \"\(part)\"") }
            guard let n = UInt64(part) else { throw bad("\"\(part)\" is too large") }
            nums.append(n)
        }
        return SemVer(major: nums[0], minor: nums[1], patch: nums[2], prerelease: pre, build: build)
    }

    static func isIdentifierChar(_ c: UInt8) -> Bool {
        (0x30...0x39).contains(c) || (0x41...0x5a).contains(c) || (0x61...0x7a).contains(c) || c == 0x2d
    }

    /// Whether it has pre-release identifiers.
    public var isPrerelease: Bool { !prerelease.isEmpty }

    /// The version as written: MAJOR.MINOR.PATCH[-pre][+build].
    public var description: String {
        var s = "\(major).\(minor).\(patch)"
        if !prerelease.isEmpty { s += "-" + prerelease.joined(separator: ".") }
        if !build.isEmpty { s += "+" + build.joined(separator: ".") }
        return s
    }

    /// Precedence per SemVer 2.0.0 section 11; build metadata does not count.
    public static func < (a: SemVer, b: SemVer) -> Bool {
        if a.major != b.major { return a.major < b.major }
        if a.minor != b.minor { return a.minor < b.minor }
        if a.patch != b.patch { return a.patch < b.patch }
        if a.prerelease.isEmpty { return false }
        if b.prerelease.isEmpty { return true }
        for (x, y) in zip(a.prerelease, b.prerelease) where x != y {
            let xn = UInt64(x), yn = UInt64(y)
            switch (xn, yn) {
            case let (p?, q?): return p < q
            case (_?, nil): return true
            case (nil, _?): return false
            default: return Array(x.utf8).lexicographicallyPrecedes(Array(y.utf8))
            }
        }
        return a.prerelease.count < b.prerelease.count
    }

    /// Equal precedence (ignores build metadata); `==` compares the full text.
    public func samePrecedence(_ other: SemVer) -> Bool { !(self < other) && !(other < self) }
}
