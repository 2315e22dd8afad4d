// `maintenance`: rewrites the multi-pack index over every pack, so that looking chunks up stops
// reading pack indexes into memory. `add`, `pull` and `gc` run it when enough packs are outside.

import SLMFormats
import Foundation

/// What `maintenance` did.
public struct MaintenanceResult: Sendable {
    /// Packs and chunk records the new multi-pack index covers (0 and 0 when there are no packs).
    public var packs: Int
    /// Chunk records it covers.
    public var entries: UInt64
    /// Packs the previous multi-pack index did not cover.
    public var uncoveredBefore: Int
    /// Size of the new multi-pack index file.
    public var bytes: UInt64
    /// Wall time.
    public var seconds: Double
}

extension Store {
    /// How many packs may sit outside the multi-pack index before `add` and `pull` rewrite it:
    /// each is read into memory by every command, while a rewrite costs a pass over all indexes.
    public static let uncoveredPackLimit = 16
    /// The same for chunk records: 32,768 records outside cost every command about 5.5 MiB of
    /// memory (a 2.5 GiB model's worth), whatever the number of packs they sit in.
    public static let uncoveredEntryLimit = 1 << 15

    /// Rewrites the multi-pack index over every committed pack (readers keep working meanwhile).
    public func maintenance() throws -> MaintenanceResult {
        let lock = try dataLock(.shared)
        defer { lock.unlock() }
        removeAbandonedWorkingDirectories()
        return try writeMultiPackIndex()
    }

    /// Packs with an index that the current multi-pack index does not list.
    public func packsOutsideMultiPackIndex() throws -> [PackID] { packsOutsideMultiPackIndex(among: try packIDs()) }

    private func packsOutsideMultiPackIndex(among ids: [PackID]) -> [PackID] {
        // A damaged multi-pack index covers nothing: the pack indexes are the truth.
        let covered = Set(((try? MultiPackIndex.open(multiPackIndexPath)) ?? nil)?.packs ?? [])
        return ids.filter { !covered.contains($0) }
    }

    /// Writes the multi-pack index in a working directory and renames it into place. The caller
    /// holds the data lock: packs only appear under it, and only gc (exclusive) removes them.
    /// `packs`: the committed packs, when the caller has just listed them.
    package func writeMultiPackIndex(packs listed: [PackID]? = nil) throws -> MaintenanceResult {
        let started = Timestamp.monotonicSeconds()
        let ids = try (listed ?? packIDs()).sorted()
        let uncovered = packsOutsideMultiPackIndex(among: ids).count
        guard !ids.isEmpty else {
            if FileSystem.exists(multiPackIndexPath) {
                FileSystem.remove(multiPackIndexPath)
                try FileSystem.syncDirectory(packsDirectory)
            }
            return MaintenanceResult(packs: 0, entries: 0, uncoveredBefore: uncovered, bytes: 0, seconds: Timestamp.monotonicSeconds() - started)
        }
        let work = try makeWorkingDirectory("maintenance")
        defer { work.remove() }
        let staged = "\(work.path)/\(MultiPackFormat.fileName)"
        let file = try FileDescriptor(path: staged, flags: O_WRONLY | O_CREAT | O_EXCL)
        let result = try MultiPackIndexWriter.write(packs: ids.map { ($0, packIndexPath($0)) }, to: file)
        try file.sync()
        CrashPoint.hit("multi-pack-index-before-rename")
        try FileSystem.rename(staged, multiPackIndexPath)
        try FileSystem.syncDirectory(packsDirectory)
        return MaintenanceResult(packs: result.packs, entries: result.entries, uncoveredBefore: uncovered,
                                 bytes: UInt64(MultiPackFormat.fileSize(packs: result.packs, entries: Int(result.entries))),
                                 seconds: Timestamp.monotonicSeconds() - started)
    }

    /// After `add` or `pull` committed: rewrite the multi-pack index when many packs, or many
    /// records, are outside it. A failure is left for `verify` to report (a damaged pack
    /// index): the work is done.
    package func refreshMultiPackIndexIfBehind(packLimit: Int = Store.uncoveredPackLimit, recordLimit: Int = Store.uncoveredEntryLimit) {
        guard let ids = try? packIDs() else { return }
        let outside = packsOutsideMultiPackIndex(among: ids)
        // Records are counted from the index files' sizes: nothing is read.
        let records = outside.reduce(0) { n, id in
            n + max(0, Int(FileSystem.fileSize(packIndexPath(id)) ?? 0) - PackFormat.indexHeaderSize - 32) / PackFormat.indexEntrySize
        }
        guard outside.count >= packLimit || records >= recordLimit else { return }
        _ = try? writeMultiPackIndex(packs: ids)
    }

    /// Checks the multi-pack index against the pack indexes it was built from: its checksum,
    /// and that merging those indexes again gives the same bytes. Problems (about this file) and
    /// notes (naming it) are returned as text.
    func checkMultiPackIndex() throws -> (problems: [String], notes: [String]) {
        let path = multiPackIndexPath
        let index: MultiPackIndex
        do {
            guard let opened = try MultiPackIndex.open(path) else { return ([], []) }
            index = opened
        } catch let e as SLMError {
            guard case .damaged(_, let problem) = e.kind else { throw e }
            return (["\(problem) (pack indexes are used instead; store maintenance rewrites it)"], [])
        }
        let file = try FileDescriptor.openForReading(path)
        let hasher = SHA256Hasher()
        try file.readBlocks(count: try file.size() - 32) { hasher.update($0) }
        guard hasher.finish() == index.storedChecksum else {
            return (["multi-pack index: checksum mismatch (pack indexes are used instead; store maintenance rewrites it)"], [])
        }
        let listed = Set(try packIDs())
        let gone = index.packs.filter { !listed.contains($0) }
        guard gone.isEmpty else {
            return ([], ["\(path): lists \(gone.count) pack(s) since removed (their entries are skipped; store maintenance rewrites it)"])
        }
        let rebuilt: MultiPackIndexWriter.Result
        do {
            rebuilt = try MultiPackIndexWriter.write(packs: index.packs.map { ($0, packIndexPath($0)) }, to: nil)
        } catch let e as SLMError {
            return (["multi-pack index cannot be checked against the pack indexes it lists: \(e)"], [])
        }
        guard rebuilt.checksum == index.storedChecksum else {
            return (["multi-pack index does not match the pack indexes it lists (store maintenance rewrites it)"], [])
        }
        return ([], [])
    }
}
