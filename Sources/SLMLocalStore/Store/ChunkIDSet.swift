// A set of chunk ids held as one sorted buffer: 16 bytes per id (a hash set needs about twice
// that), grown with realloc (which remaps rather than copies large blocks), so gc's live set for
// tens of millions of chunks stays near its own size.

#if canImport(Glibc)
import SLMFormats
import Glibc
#endif

/// A set of chunk ids, sorted in one buffer; build one with `Builder`.
public struct ChunkIDSet: @unchecked Sendable {
    /// Never mutated once built, so sharing it between threads is safe.
    private let storage: IDBuffer

    /// The empty set.
    public init() { storage = IDBuffer() }

    private init(storage: IDBuffer) { self.storage = storage }

    /// The set of `ids` (repeats allowed).
    public init(_ ids: some Sequence<ChunkID>) {
        var b = Builder()
        for id in ids { b.insert(id) }
        self = b.build()
    }

    /// How many distinct ids it holds.
    public var count: Int { storage.count }
    /// Whether it holds none.
    public var isEmpty: Bool { storage.count == 0 }

    /// Whether `id` is a member (binary search).
    public func contains(_ id: ChunkID) -> Bool { position(of: id) != nil }

    /// Where `id` sits among the members in ascending order (0..<count), if it is one: lets a
    /// caller keep one bit per member beside the set.
    public func position(of id: ChunkID) -> Int? {
        var lo = 0, hi = storage.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if storage.base[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return lo < storage.count && storage.base[lo] == id ? lo : nil
    }

    /// The ids in ascending order. The pointer is valid only while the set is alive: a caller
    /// that holds the set in nothing else uses `forEachMember`.
    public var members: UnsafeBufferPointer<ChunkID> { UnsafeBufferPointer(start: storage.base, count: storage.count) }

    /// Hands the ids to `body` in ascending order, keeping the buffer alive meanwhile.
    public func forEachMember(_ body: (ChunkID) throws -> Void) rethrows {
        try withExtendedLifetime(storage) { for id in members { try body(id) } }
    }

    /// This set with `other`'s ids, merged into this set's own buffer rather than a second copy
    /// (consuming: the receiver is gone afterwards, and must not share its buffer).
    public consuming func union(_ other: ChunkIDSet) -> ChunkIDSet {
        if other.count == 0 { return self }
        var b = Builder(continuing: storage)
        for id in other.members { b.insert(id) }
        return b.build()
    }

    /// Collects ids with repeats (versions share most chunks): new ids wait in a small sorted
    /// batch that is merged into the main buffer in place, from the back, whenever it reaches an
    /// eighth of it, so memory stays near the distinct ids' 16 bytes each.
    public struct Builder {
        private let sorted: IDBuffer
        private var pending: [ChunkID] = []

        /// A builder that has seen no id.
        public init() { sorted = IDBuffer() }

        fileprivate init(continuing storage: IDBuffer) { sorted = storage }

        /// Adds `id` (a repeat is dropped when the batch is merged).
        public mutating func insert(_ id: ChunkID) {
            pending.append(id)
            if pending.count >= max(1 << 16, sorted.count / 8) { compact() }
        }

        private mutating func compact() {
            pending.sort()
            var n = 0
            for id in pending where n == 0 || pending[n - 1] != id {
                pending[n] = id
                n += 1
            }
            let old = sorted.count
            sorted.reserve(old + n)
            let p = sorted.base
            // Merge from the back: the larger of the two tails goes to the end.
            var i = old - 1, j = n - 1, k = old + n - 1
            while j >= 0 {
                if i >= 0 && p[i] > pending[j] {
                    p[k] = p[i]; i -= 1
                } else {
                    p[k] = pending[j]; j -= 1
                }
                k -= 1
            }
            // Drop the repeats the merge put side by side.
            var w = 0
            for r in 0..<(old + n) where w == 0 || p[w - 1] != p[r] {
                p[w] = p[r]
                w += 1
            }
            sorted.count = w
            pending.removeAll(keepingCapacity: true)
        }

        /// The set of every id inserted; the builder is spent.
        public mutating func build() -> ChunkIDSet {
            compact()
            pending = []
            return ChunkIDSet(storage: sorted)
        }
    }
}

/// A malloc'd run of chunk ids. `reserve` uses realloc: glibc moves a large block with mremap,
/// so growing never holds the old and the new copy at once.
private final class IDBuffer {
    private(set) var base: UnsafeMutablePointer<ChunkID>
    var count = 0
    private var capacity = 0

    init() {
        base = malloc(MemoryLayout<ChunkID>.stride)!.assumingMemoryBound(to: ChunkID.self)
        capacity = 1
    }

    func reserve(_ n: Int) {
        guard n > capacity else { return }
        let target = max(n, capacity + capacity / 4)
        guard let grown = realloc(base, target * MemoryLayout<ChunkID>.stride) else { fatalError("out of memory growing a chunk id set") }
        base = grown.assumingMemoryBound(to: ChunkID.self)
        capacity = target
    }

    deinit { free(base) }
}
