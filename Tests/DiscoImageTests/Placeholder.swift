import XCTest
final class PlaceholderDiscoImageTests: XCTestCase { func testNothing() {} }
