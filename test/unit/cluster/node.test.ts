// The local node's prerequisites: a machine without containerd, runc or the CNI plugins gets an error
// that says what to install, never a skip.
import assert from 'node:assert/strict';
import { checkNodePrerequisites } from '../../../local-cluster/node.js';

describe('the local node: prerequisites', function () {
  const saved = { PATH: process.env.PATH, CHAPERONE_CNI_BIN_DIR: process.env.CHAPERONE_CNI_BIN_DIR };

  afterEach(function () {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it('names every missing command and the Debian packages that bring them', function () {
    process.env.PATH = '/nonexistent';
    assert.throws(() => checkNodePrerequisites(), (err: Error) => {
      assert.match(err.message, /^The local node cannot start: /);
      assert.match(err.message, /containerd, containerd-shim-runc-v2, ctr, runc, ip, tar, umount not on PATH/);
      assert.match(err.message, /apt-get update && apt-get install -y containerd runc containernetworking-plugins$/);
      return true;
    });
  });
});
