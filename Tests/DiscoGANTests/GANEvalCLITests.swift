import XCTest
import Foundation
import DiscoImage
import DiscoCore
@testable import DiscoGAN

/// `disco gan classifier` and `disco gan eval --samples` as a user runs them, on small folders of
/// real Fashion-MNIST PNGs laid out as `disco data fashion-mnist classes` writes them.
extension CLITests {
    /// DIR/<class>/NNNNN.png for images `range` of `split`.
    func writeClassFolders(_ dir: String, _ split: FashionMNIST.Split, _ range: Range<Int>, names: [String] = FashionMNIST.classNames) throws {
        for name in names { try FileManager.default.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true) }
        for i in range {
            try encodePNG(split.image(i), path: dir + "/" + names[Int(split.labels[i])] + String(format: "/%05d.png", i))
        }
    }

    func testGanClassifierAndEvalOfASamplesFolder() throws {
        let root = NSTemporaryDirectory() + "disco-gan-eval-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let train = try FashionMNIST.load(split: "train"), test = try FashionMNIST.load(split: "t10k")
        try writeClassFolders(root + "/data/train", train, 0..<600)
        try writeClassFolders(root + "/data/test", test, 0..<200)
        let classifier = root + "/classifier"

        // eval without a classifier and without DATA/train beside --real: refused, saying what to run
        try writeClassFolders(root + "/samples", test, 200..<300)
        let missing = try run(["gan", "eval", "--samples", root + "/samples", "--real", root + "/samples",
                               "--classifier", classifier], expect: 1)
        XCTAssertTrue(missing.err.contains("disco gan classifier --data"), missing.err)

        // without a classifier but with DATA/train beside --real = DATA/test, eval builds one first
        let auto = try run(["gan", "eval", "--samples", root + "/samples", "--real", root + "/data/test",
                            "--classifier", root + "/auto", "--json"])
        XCTAssertTrue(auto.err.contains("training one on"), auto.err)
        XCTAssertEqual(try FashionClassifier.load(from: root + "/auto").info?.trainCount, 600)
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(auto.out.utf8)) as? [String: Any], "stdout holds only the JSON")

        // a short classifier run writes the weights and the json with its test accuracy
        let built = try run(["gan", "classifier", "--data", root + "/data", "--out", classifier, "--epochs", "2", "--batch", "32"])
        XCTAssertTrue(built.out.contains("test accuracy"), built.out)
        let infoData = try Data(contentsOf: URL(fileURLWithPath: classifier + "/classifier.json"))
        let info = try XCTUnwrap(JSONSerialization.jsonObject(with: infoData) as? [String: Any])
        XCTAssertEqual(info["test_count"] as? Int, 200)
        XCTAssertEqual(info["train_count"] as? Int, 600)
        XCTAssertEqual(info["classes"] as? [String], FashionMNIST.classNames)
        let model = try FashionClassifier.load(from: classifier)
        let testImages = try EvalImages.load(labelledFolder: root + "/data/test", option: "--real")
        XCTAssertEqual(try XCTUnwrap(info["test_accuracy"] as? Double), model.accuracy(on: testImages), accuracy: 1e-12)

        // conditional samples folder: the figures are the classifier's own on those images
        let r = try run(["gan", "eval", "--samples", root + "/samples", "--real", root + "/data/test",
                         "--classifier", classifier, "--json"])
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        let samples = try EvalImages.load(labelledFolder: root + "/samples", option: "--samples")
        XCTAssertEqual(obj["sample_count"] as? Int, 100)
        XCTAssertEqual(obj["real_count"] as? Int, 200)
        XCTAssertEqual(obj["conditional"] as? Bool, true)
        XCTAssertEqual(try XCTUnwrap(obj["label_accuracy"] as? Double), model.accuracy(on: samples), accuracy: 1e-12)
        XCTAssertTrue((obj["frechet_note"] as? String ?? "").contains("not Inception FID"))
        let fd = try Frechet.distance(FeatureStatistics(features: model.classify(testImages.images).features),
                                      FeatureStatistics(features: model.classify(samples.images).features))
        XCTAssertEqual(try XCTUnwrap(obj["frechet_distance"] as? Double), fd, accuracy: 1e-6 * fd)
        XCTAssertEqual(obj["classifier_test_accuracy"] as? Double, info["test_accuracy"] as? Double)

        // the same images flat (no class folders): unconditional, histogram and entropy only
        try FileManager.default.createDirectory(atPath: root + "/flat", withIntermediateDirectories: true)
        for i in 200..<300 { try encodePNG(test.image(i), path: root + String(format: "/flat/%05d.png", i)) }
        let flat = try run(["gan", "eval", "--samples", root + "/flat", "--real", root + "/data/test", "--classifier", classifier])
        XCTAssertTrue(flat.out.contains("class entropy") && !flat.out.contains("label accuracy"), flat.out)
        XCTAssertTrue(flat.out.contains("not Inception FID"), flat.out)

        // a samples folder naming a class the classifier does not know, and a damaged classifier
        try FileManager.default.moveItem(atPath: root + "/samples/3-dress", toPath: root + "/samples/3-frock")
        let foreign = try run(["gan", "eval", "--samples", root + "/samples", "--real", root + "/data/test", "--classifier", classifier], expect: 1)
        XCTAssertTrue(foreign.err.contains("'3-frock'"), foreign.err)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: classifier + "/classifier.json"))
        let damaged = try run(["gan", "eval", "--samples", root + "/flat", "--real", root + "/data/test", "--classifier", classifier], expect: 1)
        XCTAssertTrue(damaged.err.contains(classifier + "/classifier.json") && damaged.err.contains("disco gan classifier"), damaged.err)
        XCTAssertEqual(damaged.err.split(separator: "\n").count, 1, damaged.err)
        // --checkpoint and --samples together are refused
        let both = try run(["gan", "eval", "--samples", root + "/flat", "--checkpoint", root, "--real", root + "/data/test"], expect: 64)
        XCTAssertTrue(both.err.contains("one of --checkpoint"), both.err)
    }
}
