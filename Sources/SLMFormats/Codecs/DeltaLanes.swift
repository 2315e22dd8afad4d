// The element loops of the delta codec (codec 3) over SIMD lanes: the same arithmetic as the
// scalar helpers in DeltaCodec, 16 bf16/f16 or 8 f32 elements per step.

extension DeltaCodec {
    /// Lanes per step; the scalar loop finishes the last `count % lanes` elements.
    static let lanes16 = 16
    static let lanes32 = 8

    @inline(__always) static func ordered(_ v: SIMD16<UInt16>) -> SIMD16<UInt16> { v ^ ((0 &- (v &>> 15)) | 0x8000) }
    @inline(__always) static func fromOrdered(_ o: SIMD16<UInt16>) -> SIMD16<UInt16> { o ^ (((o &>> 15) &- 1) | 0x8000) }
    @inline(__always) static func zigzag(_ d: SIMD16<UInt16>) -> SIMD16<UInt16> { (d &<< 1) ^ (0 &- (d &>> 15)) }
    @inline(__always) static func unzigzag(_ z: SIMD16<UInt16>) -> SIMD16<UInt16> { (z &>> 1) ^ (0 &- (z & 1)) }
    @inline(__always) static func ordered(_ v: SIMD8<UInt32>) -> SIMD8<UInt32> { v ^ ((0 &- (v &>> 31)) | 0x8000_0000) }
    @inline(__always) static func fromOrdered(_ o: SIMD8<UInt32>) -> SIMD8<UInt32> { o ^ (((o &>> 31) &- 1) | 0x8000_0000) }
    @inline(__always) static func zigzag(_ d: SIMD8<UInt32>) -> SIMD8<UInt32> { (d &<< 1) ^ (0 &- (d &>> 31)) }
    @inline(__always) static func unzigzag(_ z: SIMD8<UInt32>) -> SIMD8<UInt32> { (z &>> 1) ^ (0 &- (z & 1)) }

    /// Zigzag codes of the first `count - count % 16` elements into planes `p0` (high bytes) and
    /// `p1`; returns how many are not zero.
    static func differenceLanes16(_ nb: UnsafeRawPointer, _ bb: UnsafeRawPointer, count: Int,
                                  p0: UnsafeMutablePointer<UInt8>, p1: UnsafeMutablePointer<UInt8>) -> Int {
        var changed = 0
        var i = 0
        while i + lanes16 <= count {
            // Per-lane counters flushed before a UInt16 lane could wrap.
            var tally = SIMD16<UInt16>()
            let stop = min(count - count % lanes16, i + lanes16 * 32768)
            while i < stop {
                let z = zigzag(ordered(nb.loadUnaligned(fromByteOffset: 2 * i, as: SIMD16<UInt16>.self))
                               &- ordered(bb.loadUnaligned(fromByteOffset: 2 * i, as: SIMD16<UInt16>.self)))
                UnsafeMutableRawPointer(p0 + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: z &>> 8), as: SIMD16<UInt8>.self)
                UnsafeMutableRawPointer(p1 + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: z), as: SIMD16<UInt8>.self)
                tally &+= (z | (0 &- z)) &>> 15
                i += lanes16
            }
            changed += Int(SIMD16<UInt32>(truncatingIfNeeded: tally).wrappedSum())  // a UInt16 sum could wrap
        }
        return changed
    }

    static func differenceLanes32(_ nb: UnsafeRawPointer, _ bb: UnsafeRawPointer, count: Int, planes: UnsafeMutablePointer<UInt8>) -> Int {
        let p0 = planes, p1 = planes + count, p2 = planes + 2 * count, p3 = planes + 3 * count
        var tally = SIMD8<UInt32>()
        var i = 0
        while i + lanes32 <= count {
            let z = zigzag(ordered(nb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<UInt32>.self))
                           &- ordered(bb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<UInt32>.self)))
            UnsafeMutableRawPointer(p0 + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: z &>> 24), as: SIMD8<UInt8>.self)
            UnsafeMutableRawPointer(p1 + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: z &>> 16), as: SIMD8<UInt8>.self)
            UnsafeMutableRawPointer(p2 + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: z &>> 8), as: SIMD8<UInt8>.self)
            UnsafeMutableRawPointer(p3 + i).storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: z), as: SIMD8<UInt8>.self)
            tally &+= (z | (0 &- z)) &>> 31
            i += lanes32
        }
        return Int(tally.wrappedSum())
    }

    /// The first `count - count % 16` elements rebuilt from dense planes and the base.
    static func applyLanes16(p0: UnsafePointer<UInt8>, p1: UnsafePointer<UInt8>, count: Int, base bb: UnsafeRawPointer,
                             into body: UnsafeMutableRawPointer) {
        var i = 0
        while i + lanes16 <= count {
            let hi = SIMD16<UInt16>(truncatingIfNeeded: UnsafeRawPointer(p0 + i).loadUnaligned(as: SIMD16<UInt8>.self))
            let lo = SIMD16<UInt16>(truncatingIfNeeded: UnsafeRawPointer(p1 + i).loadUnaligned(as: SIMD16<UInt8>.self))
            let o = ordered(bb.loadUnaligned(fromByteOffset: 2 * i, as: SIMD16<UInt16>.self)) &+ unzigzag(hi &<< 8 | lo)
            body.storeBytes(of: fromOrdered(o), toByteOffset: 2 * i, as: SIMD16<UInt16>.self)
            i += lanes16
        }
    }

    static func applyLanes32(planes: UnsafePointer<UInt8>, count: Int, base bb: UnsafeRawPointer, into body: UnsafeMutableRawPointer) {
        let p0 = planes, p1 = planes + count, p2 = planes + 2 * count, p3 = planes + 3 * count
        var i = 0
        while i + lanes32 <= count {
            func plane(_ p: UnsafePointer<UInt8>) -> SIMD8<UInt32> {
                SIMD8<UInt32>(truncatingIfNeeded: UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<UInt8>.self))
            }
            let z = plane(p0) &<< 24 | plane(p1) &<< 16 | plane(p2) &<< 8 | plane(p3)
            let o = ordered(bb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<UInt32>.self)) &+ unzigzag(z)
            body.storeBytes(of: fromOrdered(o), toByteOffset: 4 * i, as: SIMD8<UInt32>.self)
            i += lanes32
        }
    }
}
