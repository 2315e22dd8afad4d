// The gear table of the canonical FastCDC: GEAR[i] is the first 8 bytes, big-endian, of
// MD5 of 64 bytes each equal to i. Derived at first use rather than pasted, so it can be checked.

enum GearTable {
    static let gear: [UInt64] = (0..<256).map { i in
        let digest = MD5.hash([UInt8](repeating: UInt8(i), count: 64))
        return digest[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// GEAR[i] << 1, for the two-bytes-per-step loop.
    static let gearShifted: [UInt64] = gear.map { $0 << 1 }
}
