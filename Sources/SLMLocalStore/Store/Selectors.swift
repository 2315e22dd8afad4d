// Resolving NAME@<selector> in a local store: `latest`, a stage, or a SemVer range.

import SLMFormats

extension Store {
    /// The version a selector picked, and why.
    public struct SelectorResolution: Sendable {
        /// The version.
        public var resolved: ResolvedVersion
        /// Why it was picked, for `resolve` to print (the stage that holds it, the range it is the
        /// newest in, ...).
        public var reason: String
    }

    /// The version of `name` that `selector` (an exact version, `latest`, a stage or a SemVer
    /// range) picks.
    public func resolveSelector(name: ModelName, selector: String) throws -> SelectorResolution {
        let all = try versions(of: name)
        guard !all.isEmpty else { throw SLMError.notFound("unknown model \(name) (no versions in \(root))") }
        var holders: [String: SemVer] = [:]
        for (stage, id) in try stageRefs(of: name) {
            if let v = all.first(where: { $0.id == id }) { holders[stage] = v.version }
        }
        let (version, reason): (SemVer, String)
        do {
            (version, reason) = try VersionSelector.pick(selector, versions: all.map(\.version), stageHolders: holders)
        } catch let e as SLMError {
            if case .notFound(let m) = e.kind { throw SLMError.notFound("\(name)@\(selector): \(m)") }
            throw e
        }
        let id = all.first { $0.version == version }!.id
        return SelectorResolution(resolved: ResolvedVersion(name: name, version: version, id: id, object: try readVersion(id)),
                                  reason: reason)
    }
}
