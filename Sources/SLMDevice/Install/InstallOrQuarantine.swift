// The one install step of `pull --to` and `sync`: check out a version and make it current, or,
// when a file fails its SHA-256 although every chunk passed its XXH3 (a chunk id collides, most
// likely planted by a remote), drop what the transfer brought so nothing is built from it again.

import SLMFormats
import SLMLocalStore

extension Store {
    /// Installs `version` (its tree `tree`) into `dir` and makes it current; returns whether files
    /// were written (false when the version was on disk already). On a file mismatch,
    /// `beforeQuarantine` runs (to release a lock, clear a pending check), the file's chunks leave
    /// `addedPacks` (the packs this transfer wrote; nil when it wrote none) and the versions it
    /// brought (`brought`, newest first) are removed; the error then says the chunks were dropped
    /// from `dropped`.
    @discardableResult
    func installOrQuarantine(_ version: ResolvedVersion, tree: TreeObject? = nil, into dir: InstallDirectory, keep: Int, batchBytes: Int,
                             addedPacks: Set<PackID>?, brought: [ResolvedVersion],
                             beforeQuarantine: () throws -> Void, dropped: String) throws -> Bool {
        let label = "\(version.name)@\(version.version)"
        do {
            return try dir.installAndActivate(store: self, tree: try tree ?? readTree(version.object.tree), version: version.version.description,
                                              id: version.id, label: label, keep: keep, batchBytes: batchBytes)
        } catch let e as SLMError {
            guard case let .fileMismatch(path, problem, chunks) = e.kind else { throw e }
            try beforeQuarantine()
            if let addedPacks { try quarantine(chunks, from: addedPacks, versions: brought) }
            throw SLMError.fileMismatch(path: path, problem: problem + "; its chunks were dropped from \(dropped)", chunks: chunks)
        }
    }
}
