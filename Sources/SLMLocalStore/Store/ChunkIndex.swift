// The merged view of every pack index in a store (or a remote): chunk id → where its bytes are.
// Packs a multi-pack index covers are searched in it on disk; the others (few: those written
// since the last maintenance, or a remote's) are held in memory.
// Full records (codecs 0-2) are preferred; a chunk stored only as a delta record (codec 3) is
// read through it, its bases always from full records (depth 1).

import SLMFormats

/// Where each chunk's records are, across every pack index of a store (or a remote).
public struct ChunkIndex: Sendable {
    struct Slot: Sendable {
        var pack: UInt32
        var offset: UInt64
        var storedLength: UInt32
        var rawLength: UInt32
        var codec: ChunkCodec
    }

    /// The packs added, in the order they were added.
    public private(set) var packs: [PackID] = []
    /// Each pack's size, as its index records it.
    public private(set) var packSizes: [PackID: UInt64] = [:]
    private var slots: [ChunkID: Slot] = [:]
    private var deltaSlots: [ChunkID: [Slot]] = [:]
    /// The multi-pack index and, per pack it lists, that pack's position in `packs`
    /// (nil for a pack gone since the index was written: its entries are skipped).
    private var multiPack: MultiPackIndex?
    private var multiPackSlots: [UInt32?] = []
    private var multiPackNumbers: [PackID: Int] = [:]

    /// An index of no pack.
    public init() {}

    /// Chunk records held in memory (those of packs no multi-pack index covers).
    public var inMemoryRecords: Int { slots.count + deltaSlots.count }

    /// The multi-pack index this view searches, if any.
    public var multiPackIndex: MultiPackIndex? { multiPack }

    /// Whether a pack's entries are reached through the multi-pack index.
    public func covers(_ pack: PackID) -> Bool { multiPackNumbers[pack].map { multiPackSlots[$0] != nil } ?? false }

    /// Whether the chunk's bytes are here, as a full or a delta record.
    public func contains(_ id: ChunkID) -> Bool {
        slots[id] != nil || deltaSlots[id] != nil || mapped(id, full: nil) != nil
    }

    /// Whether the chunk has a full record (what a delta's base and a remote's listed version need).
    public func containsFull(_ id: ChunkID) -> Bool { fullLocation(of: id) != nil }

    /// The full record of a chunk, else its first delta record.
    public func location(of id: ChunkID) -> ChunkLocation? {
        fullLocation(of: id) ?? deltaSlots[id]?.first.map(location) ?? mapped(id, full: false)
    }

    /// Where the chunk's full record is (codecs 0 to 2), nil when it has none (only delta records,
    /// or none at all).
    public func fullLocation(of id: ChunkID) -> ChunkLocation? { slots[id].map(location) ?? mapped(id, full: true) }

    private func location(_ s: Slot) -> ChunkLocation {
        ChunkLocation(pack: packs[Int(s.pack)], offset: s.offset, storedLength: s.storedLength, rawLength: s.rawLength, codec: s.codec)
    }

    /// Where a multi-pack index entry points, or nil when its pack is gone.
    private func location(_ e: MultiPackEntry) -> ChunkLocation? {
        multiPackSlots[e.pack].map { ChunkLocation(pack: packs[Int($0)], offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, codec: e.codec) }
    }

    /// Bytes the chunk's record takes in its pack (header included), 0 when it is not here.
    public func recordBytes(of id: ChunkID) -> UInt64 { location(of: id).map { PackFormat.recordSize($0.storedLength) } ?? 0 }

    /// The first multi-pack index entry for `id` in a pack still present: a full record (`full` true), a
    /// delta record (false) or either (nil).
    private func mapped(_ id: ChunkID, full: Bool?) -> ChunkLocation? {
        guard let multiPack else { return nil }
        var found: ChunkLocation?
        multiPack.forEachEntry(of: id) { e in
            guard full.map({ $0 == (e.codec != .delta) }) ?? true else { return false }
            found = location(e)
            return found != nil
        }
        return found
    }

    /// Delta records of a chunk, in every pack that holds one.
    public func deltaLocations(of id: ChunkID) -> [ChunkLocation] {
        var out = (deltaSlots[id] ?? []).map(location)
        multiPack?.forEachEntry(of: id) { e in
            if e.codec == .delta, let loc = location(e) { out.append(loc) }
            return false
        }
        return out
    }

    /// Adds a pack's entries; a chunk already known keeps its first full location.
    public mutating func add(pack: PackID, index: PackIndex) {
        let p = UInt32(packs.count)
        packs.append(pack)
        packSizes[pack] = index.packSize
        slots.reserveCapacity(slots.count + index.entries.count)
        for e in index.entries {
            let slot = Slot(pack: p, offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength, codec: e.codec)
            if e.codec == .delta {
                deltaSlots[e.id, default: []].append(slot)
            } else if slots[e.id] == nil {
                slots[e.id] = slot
            }
        }
    }

    /// Searches `index` for the packs it lists that are in `present`; call before `add`.
    mutating func attach(_ index: MultiPackIndex, present: Set<PackID>) {
        multiPack = index
        multiPackSlots = index.packs.map { id in
            guard present.contains(id) else { return nil }
            packs.append(id)
            return UInt32(packs.count - 1)
        }
        for (n, id) in index.packs.enumerated() where multiPackSlots[n] != nil {
            multiPackNumbers[id] = n
            packSizes[id] = index.packSizes[n]
        }
    }
}
