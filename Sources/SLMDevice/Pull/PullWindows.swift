// A pull's range requests, planned one window of missing chunks at a time: the chunks located in
// the remote's pack indexes (delta records preferred where a usable delta set holds them) and
// coalesced into ranges. A pull walks the windows twice: once only counting (so the disk check
// and the progress total come before any download, and a remote that lacks a chunk is caught
// before a byte is fetched), then again as the fetch reaches each window.

import SLMFormats
import SLMLocalStore
import SLMRemote

final class PullWindows {
    private let targets: [PullTarget]
    private let reader: RemoteReader
    private let location: String
    private let missing: MissingChunks
    private let index: ChunkIndex
    private let options: PullOptions
    private let deltaPacks: (Manifest) throws -> [PackID]
    /// Read on the first walk, so a pull with nothing missing never reads it.
    private var manifest: Manifest?
    private var usableDeltas: [PackID] = []

    /// `missing` are the chunks `index` (the store before the fetch) lacks; `deltaPacks` picks the
    /// delta packs usable from the manifest (called once, only with `options.useDeltas`).
    init(targets: [PullTarget], reader: RemoteReader, location: String, missing: MissingChunks, index: ChunkIndex,
         options: PullOptions, deltaPacks: @escaping (Manifest) throws -> [PackID]) {
        (self.targets, self.reader, self.location, self.missing, self.index) = (targets, reader, location, missing, index)
        (self.options, self.deltaPacks) = (options, deltaPacks)
    }

    /// Calls `body` with each window's range requests, the record bytes they bring and the number of chunks.
    func forEach(_ body: (_ plans: [RangePlan], _ bytes: UInt64, _ chunks: Int) throws -> Void) throws {
        guard !missing.isEmpty else { return }
        if manifest == nil {
            let m = try reader.manifest(models: Set(targets.map(\.name.value)))
            manifest = m
            if options.useDeltas { usableDeltas = try deltaPacks(m) }
        }
        let order = PullPlan.packOrder(targets, manifest: manifest!)
        // A window's chunks mostly follow the last one's in the same pack: its search starts
        // there (and wraps around), so each window reads about one pack index, not all before it.
        var start = 0
        let index = self.index
        try PullPlan.windows(targets, missing: missing, stillNeeded: { !index.contains($0) }, size: options.planWindowChunks) { ids, rawLengths in
            var located = try PullPlan.locate(ids, rawLengths: rawLengths, order: Array(order[start...] + order[..<start]),
                                              location: location, entries: reader.forEachIndexEntry)
            if let last = located.last?.pack, let i = order.firstIndex(of: last) { start = i }
            located = try PullPlan.preferDeltas(located, deltaPacks: usableDeltas, rawLengths: rawLengths, location: location,
                                                entries: reader.forEachIndexEntry)
            try body(PullPlan.ranges(located, gapLimit: options.gapLimit, maxRange: options.maxRangeBytes),
                     located.reduce(UInt64(0)) { $0 + PackFormat.recordSize($1.entry.storedLength) }, located.count)
        }
    }

    /// The record bytes and chunk count the whole fetch will bring.
    func total() throws -> (bytes: UInt64, chunks: Int) {
        var bytes: UInt64 = 0
        var chunks = 0
        try forEach { _, b, c in
            bytes += b
            chunks += c
        }
        return (bytes, chunks)
    }
}
