// SemVer ranges with npm `semver` semantics: comparators (>=, <, ...), X-ranges (1.x, *),
// partial versions, caret (^), tilde (~), hyphen ranges, `||`; pre-releases only match
// when a comparator names a pre-release of the same MAJOR.MINOR.PATCH.

/// A set of versions, written as npm's `semver` writes ranges.
public struct SemVerRange: Sendable, CustomStringConvertible {
    enum Op: String, Sendable { case lt = "<", le = "<=", gt = ">", ge = ">=", eq = "=" }

    struct Comparator: Sendable {
        var op: Op
        var version: SemVer

        func test(_ v: SemVer) -> Bool {
            switch op {
            case .lt: return v < version
            case .le: return !(version < v)
            case .gt: return version < v
            case .ge: return !(v < version)
            case .eq: return v.samePrecedence(version)
            }
        }
    }

    /// OR of AND-sets.
    let sets: [[Comparator]]
    /// The range as written.
    public let text: String

    /// The range as written.
    public var description: String { text }

    /// Parses `text`; the error says what is wrong with it.
    public init(_ text: String) throws {
        self.text = text
        func bad(_ why: String) -> SLMError { .argument("invalid version range \"\(text)\": \(why)") }
        var sets: [[Comparator]] = []
        for part in text.components(separatedBy: "||") {
            let tokens = part.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            var set: [Comparator] = []
            if tokens.count == 3 && tokens[1] == "-" {
                let lo = try Partial(tokens[0], bad)
                let hi = try Partial(tokens[2], bad)
                set.append(Comparator(op: .ge, version: lo.floor))
                if hi.isFull {
                    set.append(Comparator(op: .le, version: hi.floor))
                } else if let up = hi.nextUp {
                    set.append(Comparator(op: .lt, version: up))
                }
            } else {
                // Allow ">= 1.2.3" with a space after the operator.
                var merged: [String] = []
                var i = 0
                while i < tokens.count {
                    if ["<", "<=", ">", ">=", "=", "^", "~"].contains(tokens[i]), i + 1 < tokens.count {
                        merged.append(tokens[i] + tokens[i + 1]); i += 2
                    } else { merged.append(tokens[i]); i += 1 }
                }
                if merged.isEmpty { merged = ["*"] }
                for token in merged { set += try SemVerRange.desugar(token, bad) }
            }
            sets.append(set)
        }
        self.sets = sets
    }

    /// Whether `v` is in the range (a pre-release only when a comparator names one of the same
    /// MAJOR.MINOR.PATCH).
    public func contains(_ v: SemVer) -> Bool {
        sets.contains { set in
            guard set.allSatisfy({ $0.test(v) }) else { return false }
            if !v.isPrerelease { return true }
            return set.contains { c in
                c.version.isPrerelease && c.version.major == v.major && c.version.minor == v.minor && c.version.patch == v.patch
            }
        }
    }

    /// A version with missing or wildcard parts: "1", "1.2", "1.x", "*".
    struct Partial {
        var major: UInt64?
        var minor: UInt64?
        var patch: UInt64?
        var prerelease: [String] = []

        init(_ raw: String, _ bad: (String) -> SLMError) throws {
            var s = raw
            if s.hasPrefix("v") || s.hasPrefix("=") { s.removeFirst() }
            if let plus = s.firstIndex(of: "+") { s = String(s[..<plus]) }
            var pre = ""
            if let dash = s.firstIndex(of: "-") {
                pre = String(s[s.index(after: dash)...])
                s = String(s[..<dash])
            }
            let parts = s.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard (1...3).contains(parts.count) else { throw bad("\"\(raw)\" is not a version") }
            var nums: [UInt64?] = []
            var wild = false
            for p in parts {
                if ["x", "X", "*"].contains(p) { nums.append(nil); wild = true; continue }
                guard !wild, let n = UInt64(p), p == "0" || !p.hasPrefix("0") else { throw bad("\"\(raw)\" is not a version") }
                nums.append(n)
            }
            while nums.count < 3 { nums.append(nil) }
            major = nums[0]; minor = nums[1]; patch = nums[2]
            if !pre.isEmpty {
                guard patch != nil else { throw bad("pre-release on a partial version \"\(raw)\"") }
                prerelease = pre.split(separator: ".").map(String.init)
                guard SemVer(parsing: "0.0.0-" + pre) != nil else { throw bad("bad pre-release in \"\(raw)\"") }
            }
        }

        var isFull: Bool { patch != nil }
        var floor: SemVer { SemVer(major: major ?? 0, minor: minor ?? 0, patch: patch ?? 0, prerelease: prerelease) }
        /// First version above every match of this partial, as "X.Y.Z-0" (nil for "*").
        var nextUp: SemVer? {
            guard let major else { return nil }
            guard let minor else { return SemVer(major: major + 1, minor: 0, patch: 0, prerelease: ["0"]) }
            return SemVer(major: major, minor: minor + 1, patch: 0, prerelease: ["0"])
        }
    }

    static func desugar(_ token: String, _ bad: (String) -> SLMError) throws -> [Comparator] {
        var t = Substring(token)
        if t.hasPrefix("^") {
            let p = try Partial(String(t.dropFirst()), bad)
            guard let major = p.major else { return [] }
            let lo = p.floor
            let hi: SemVer
            if major > 0 || p.minor == nil {
                hi = SemVer(major: major + 1, minor: 0, patch: 0, prerelease: ["0"])
            } else if let minor = p.minor, minor > 0 || p.patch == nil {
                hi = SemVer(major: 0, minor: minor + 1, patch: 0, prerelease: ["0"])
            } else {
                hi = SemVer(major: 0, minor: 0, patch: (p.patch ?? 0) + 1, prerelease: ["0"])
            }
            return [Comparator(op: .ge, version: lo), Comparator(op: .lt, version: hi)]
        }
        if t.hasPrefix("~") {
            t = t.dropFirst()
            if t.hasPrefix(">") { t = t.dropFirst() }
            let p = try Partial(String(t), bad)
            guard let major = p.major else { return [] }
            let hi = p.minor == nil ? SemVer(major: major + 1, minor: 0, patch: 0, prerelease: ["0"])
                                    : SemVer(major: major, minor: p.minor! + 1, patch: 0, prerelease: ["0"])
            return [Comparator(op: .ge, version: p.floor), Comparator(op: .lt, version: hi)]
        }
        var op: Op = .eq
        for candidate in [Op.ge, .le, .gt, .lt, .eq] where t.hasPrefix(candidate.rawValue) {
            op = candidate
            t = t.dropFirst(candidate.rawValue.count)
            break
        }
        let p = try Partial(String(t), bad)
        if p.isFull { return [Comparator(op: op, version: p.floor)] }
        guard p.major != nil else {
            // "*" or ">=*": anything; "<*" or ">*": nothing.
            return op == .lt || op == .gt ? [Comparator(op: .lt, version: SemVer(major: 0, minor: 0, patch: 0, prerelease: ["0"]))] : []
        }
        switch op {
        case .eq: return [Comparator(op: .ge, version: p.floor), Comparator(op: .lt, version: p.nextUp!)]
        case .ge: return [Comparator(op: .ge, version: p.floor)]
        case .lt: return [Comparator(op: .lt, version: SemVer(major: p.floor.major, minor: p.floor.minor, patch: p.floor.patch, prerelease: ["0"]))]
        case .gt: return [Comparator(op: .ge, version: p.nextUp!)]
        case .le: return [Comparator(op: .lt, version: p.nextUp!)]
        }
    }
}

/// Picks a version for a selector: exact version, `latest`, a stage, or a range.
public enum VersionSelector {
    /// The stage names a selector may name.
    public static let stages = ["production", "staging", "development", "archived"]

    /// `versions` in any order; `stageHolders` maps stage name to the version holding it.
    public static func pick(_ selector: String, versions: [SemVer], stageHolders: [String: SemVer]) throws -> (SemVer, String) {
        let sorted = versions.sorted()
        if let exact = SemVer(parsing: selector), let hit = sorted.first(where: { $0 == exact || $0.samePrecedence(exact) && exact.build.isEmpty }) {
            return (hit, "exact version")
        }
        if selector == "latest" {
            guard let v = sorted.last(where: { !$0.isPrerelease }) else { throw SLMError.notFound("no release version (only pre-releases: \(sorted.map(\.description).joined(separator: ", ")))") }
            return (v, "highest release version")
        }
        if let v = stageHolders[selector] { return (v, "holds stage \(selector)") }
        if selector == "development" {
            let promoted = Set(stageHolders.filter { $0.key != "archived" }.values)
            guard let v = sorted.last(where: { !promoted.contains($0) }) else { throw SLMError.notFound("no version is in development (every version holds a stage)") }
            return (v, "highest version holding no stage")
        }
        if stages.contains(selector) {
            throw SLMError.notFound("no version holds stage \(selector)\(stageHolders.isEmpty ? "" : " (stages: " + stageHolders.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ", ") + ")")")
        }
        let range = try SemVerRange(selector)
        guard let v = sorted.last(where: { range.contains($0) }) else {
            throw SLMError.notFound("no version matches \(selector); versions: \(sorted.map(\.description).joined(separator: ", "))")
        }
        return (v, "highest version matching \(selector)")
    }
}
