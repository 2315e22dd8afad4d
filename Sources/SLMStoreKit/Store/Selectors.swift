// Placeholder-free minimal selector resolution: `latest`. The registry extends this with
// ranges and stages.

extension Store {
    public struct SelectorResolution: Sendable {
        public var resolved: ResolvedVersion
        public var reason: String
    }

    public func resolveSelector(name: ModelName, selector: String) throws -> SelectorResolution {
        let all = try versions(of: name)
        guard !all.isEmpty else { throw SLMError.notFound("unknown model \(name) (no versions in \(root))") }
        if selector == "latest" {
            guard let pick = all.last(where: { !$0.version.isPrerelease }) ?? all.last else {
                throw SLMError.notFound("\(name) has no versions")
            }
            let r = ResolvedVersion(name: name, version: pick.version, id: pick.id, object: try readVersion(pick.id))
            return SelectorResolution(resolved: r, reason: "highest release version")
        }
        throw SLMError.argument("invalid version \"\(selector)\" for \(name): expected SemVer like 1.2.0 or `latest`; known versions: \(all.map { $0.version.description }.joined(separator: ", "))")
    }
}
