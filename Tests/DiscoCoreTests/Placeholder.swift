import XCTest
final class PlaceholderDiscoCoreTests: XCTestCase { func testNothing() {} }
