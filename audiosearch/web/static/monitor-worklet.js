// The monitor's microphone tap: mono float samples, posted in blocks to the page, which streams them as f32le.
"use strict";

const BLOCK_FRAMES = 4096;

class FeedTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK_FRAMES);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || !channels.length) return true;
    const frames = channels[0].length;
    for (let i = 0; i < frames; i += 1) {
      let sample = 0;
      for (const channel of channels) sample += channel[i];
      this.block[this.filled] = sample / channels.length;
      this.filled += 1;
      if (this.filled === BLOCK_FRAMES) {
        this.port.postMessage(this.block, [this.block.buffer]);
        this.block = new Float32Array(BLOCK_FRAMES);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("feed-tap", FeedTap);
