import XCTest
import Foundation
import DiscoImage
import DiscoCore
@testable import DiscoGAN

/// A short conditional DCGAN run, scored by disco's own classifier (GANEvalTests' short run):
/// the samples drawn for each label are called that label far more often than chance.
/// Small and documented: three well-separated classes (trouser, sneaker, bag), 600 training images
/// each, width 8, batch 32, lr 1e-3 (at the default 2e-4 this short a run has not left the noise),
/// 3 epochs (168 iterations, ~3 s); 300 samples, 100 per label.
final class GANLabelAccuracyTests: XCTestCase {
    func testConditionalDCGANLabelAccuracyWellAboveChance() throws {
        _ = try BLAS.load()
        guard let train = try? FashionMNIST.load(split: "train") else {
            return XCTFail("Fashion-MNIST is missing from \(FashionMNIST.defaultDirectory): apt-get install dataset-fashion-mnist")
        }
        let test = try XCTUnwrap(GANEvalTests.data?.test)
        let classifier = try XCTUnwrap(GANEvalTests.shortRun)
        let wanted: [UInt8] = [1, 7, 8], names = wanted.map { FashionMNIST.classNames[Int($0)] }
        var picks: [(Int, Int)] = []
        for (k, c) in wanted.enumerated() { picks += train.indices(labeled: [c]).prefix(600).map { ($0, k) } }
        let images = Tensor(uninitialized: [picks.count, 28, 28, 1])
        for (j, (i, _)) in picks.enumerated() { for p in 0..<784 { images[j * 784 + p] = Float(train.pixels[i * 784 + p]) / 255 } }
        let data = LabelledImages(folder: "fashion-mnist train (3 classes)", classNames: names, images: images,
                                  labels: picks.map { $0.1 }, failures: [])
        var c = GANConfig()
        c.arch = .dcgan; c.classNames = names; c.width = 8; c.batch = 32; c.epochs = 3; c.seed = 3; c.learningRate = 1e-3
        let run = NSTemporaryDirectory() + "disco-gan-acc-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: run) }
        let t = try GANTrainer(config: c, run: run, data: data)
        try t.prepare(resume: false)
        try t.train()
        let realSubset = test.subset(test.labels!.indices.filter { [1, 7, 8].contains(test.labels![$0]) })
        let r = try GANEvaluation.evaluate(sampler: t.model, real: realSubset, count: 300, seed: 1, classifier: classifier)
        let accuracy = try XCTUnwrap(r.labelAccuracy)
        print("conditional DCGAN, 3 classes, \(t.iteration) iterations: label accuracy \(accuracy), per class \(r.perClassLabelAccuracy ?? [])")
        // Chance: 1/3 if the samples were the three classes at random (less over ten).
        XCTAssertGreaterThan(accuracy, 0.7)
    }
}
