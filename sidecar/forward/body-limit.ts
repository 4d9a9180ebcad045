// A request body passes through this on its way upstream and is cut off at the cap.
import { Transform, type TransformCallback } from 'node:stream';
import { StatusError } from '../../lib/status.js';

export class BodyTooLarge extends StatusError {
  constructor(message: string) {
    super(413, 'RequestEntityTooLarge', message);
  }
}

export class BodyLimit extends Transform {
  private seen = 0;

  constructor(private readonly maxBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.maxBytes) callback(new BodyTooLarge(`the request body is larger than ${this.maxBytes} bytes`));
    else callback(null, chunk);
  }
}
