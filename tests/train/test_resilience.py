"""Runs that lose nothing: SIGKILL mid-epoch then --resume; DDP over 2 CPU processes (gloo) via torchrun."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from zoo.train.checkpoint import load_checkpoint

REPO = Path(__file__).parents[2]
TINY = ['--model', 'test_resnet', '--img-size', '32', '--batch-size', '16', '--warmup-epochs', '0',
        '--no-progress', '--threads', '1']

# Trains through zoo.train.train with a step hook that records the step it is about to take, and holds the run
# there from step 5 on (mid second epoch), so that on a fast machine the kill cannot land after the epoch's end.
RUNNER = '''
import sys, time
from pathlib import Path
from zoo.train import parse_config, train

def hook(step, total):
    Path(sys.argv[1]).write_text(str(step))
    if step >= 5:
        time.sleep(600)

train(parse_config(sys.argv[2:]), step_hooks=[hook])
'''


def _env():
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO))
    return env


def test_sigkill_mid_epoch_then_resume_loses_no_epoch(tmp_path):
    out, marker = tmp_path / 'run', tmp_path / 'step'
    args = TINY + ['--epochs', '3', '--max-steps-per-epoch', '4', '--output', str(out)]
    proc = subprocess.Popen([sys.executable, '-c', RUNNER, str(marker)] + args, cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    try:
        # wait until the second epoch is under way (step 5 of 4 per epoch), then kill without warning
        while not (marker.exists() and marker.read_text() and int(marker.read_text()) >= 5):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, 'the run did not reach its second epoch'
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(out / 'last.pth')
    assert ckpt['epoch'] == 1 and ckpt['step'] == 4  # the completed epoch is there, intact

    done = subprocess.run([sys.executable, 'train.py'] + args + ['--resume'], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'resumed' in done.stdout and 'after epoch 1' in done.stdout
    final = load_checkpoint(out / 'last.pth')
    assert [r['epoch'] for r in final['history']] == [1, 2, 3]
    assert final['history'][0] == ckpt['history'][0] and final['step'] == 12
    assert (out / 'metrics.csv').read_text().count('\n') == 4  # header + 3 epochs, no duplicate row


def test_ddp_two_cpu_processes_with_gloo(tmp_path):
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py']
    cmd += TINY + ['--epochs', '1', '--max-steps-per-epoch', '3', '--output', str(out), '--device', 'cpu']
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count('outputs in') == 1  # rank 0 alone reports and writes
    assert 'x 2 processes' in done.stdout
    ckpt = load_checkpoint(out / 'last.pth')
    assert ckpt['step'] == 3 and len(ckpt['rng']) == 2
    assert not any(k.startswith('module.') for k in ckpt['model'])
    # validation is summed over both ranks' shards: the whole held-out split, no padding
    assert 0. <= ckpt['history'][0]['val_top1'] <= 100.
