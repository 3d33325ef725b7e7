import XCTest
import Foundation
@testable import DiscoGAN

/// The TFRecord framing and the protocol-buffer encoding, against published check values and
/// bytes worked out by hand from the .proto field numbers. (scripts/test_interop.py reads whole
/// event files back with the tensorboard package's own reader.)
final class TensorBoardTests: XCTestCase {
    func testCRC32CCheckValues() {
        // The CRC catalogue's check value for CRC-32C, and RFC 3720's all-zero 32-byte vector.
        XCTAssertEqual(TensorBoard.crc32c(Data("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(TensorBoard.crc32c(Data(repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(TensorBoard.crc32c(Data(repeating: 0xFF, count: 32)), 0x62A8_AB43)
    }

    func testRecordFraming() {
        let payload = Data("123456789".utf8)
        let r = TensorBoard.record(payload)
        XCTAssertEqual(r.count, 8 + 4 + 9 + 4)
        XCTAssertEqual(Array(r.prefix(8)), [9, 0, 0, 0, 0, 0, 0, 0])
        let c: UInt32 = 0xE306_9283, masked = ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
        XCTAssertEqual(Array(r.suffix(4)), withUnsafeBytes(of: masked.littleEndian) { Array($0) })
        XCTAssertEqual(r.subdata(in: 12..<21), payload)
    }

    func testScalarEventBytes() {
        // Value { tag: "a" (field 1, bytes), simple_value: 1.0 (field 2, fixed32) }
        XCTAssertEqual(Array(TensorBoard.scalarValue(tag: "a", 1.0)), [0x0A, 0x01, 0x61, 0x15, 0x00, 0x00, 0x80, 0x3F])
        // Event { wall_time: 2.0 (1, fixed64), step: 300 (2, varint AC 02), summary (5) { value (1) } }
        let e = TensorBoard.event(wallTime: 2, step: 300, summary: [Data([0x0A, 0x01, 0x61])])
        XCTAssertEqual(Array(e), [0x09, 0, 0, 0, 0, 0, 0, 0x00, 0x40, 0x10, 0xAC, 0x02, 0x2A, 0x05, 0x0A, 0x03, 0x0A, 0x01, 0x61])
    }

    /// Every term a step reports has its place in the report and in TensorBoard, both read off
    /// `StepLosses.Term`.
    func testEveryTermIsPlacedFromOneDefinition() {
        for t in StepLosses.Term.allCases {
            let tag = TensorBoard.tag(for: t.rawValue), group = Report.group(of: t.rawValue)
            XCTAssertFalse(tag.hasPrefix("other/"), "\(t)")
            switch t.family {
            case .schedule: XCTAssertEqual(group, .other); XCTAssertTrue(tag.hasPrefix("schedule/"))
            case .dOutput: XCTAssertEqual(group, .dOutput(domain: t.domain!, real: t.isReal!)); XCTAssertTrue(tag.hasPrefix("D/"))
            default:
                XCTAssertEqual(group, t.network == .generator ? .generator : .discriminator, "\(t)")
                XCTAssertEqual(tag, "loss/" + t.rawValue)
            }
        }
    }

    func testTagsByMeaning() {
        XCTAssertEqual(TensorBoard.tag(for: "gen_total"), "loss/gen_total")
        XCTAssertEqual(TensorBoard.tag(for: "D_A_real"), "D/D_A_real")
        XCTAssertEqual(TensorBoard.tag(for: "rate"), "schedule/reconstruction_rate")
    }
}
