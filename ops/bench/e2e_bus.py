"""The end-to-end driver's NATS connection (nats-py): it publishes MDB
records as `nats pub dom.mdb.HOST '{"RequiredImage":"NAME"}'` does, and
follows every machine's state reports and desired states, noting when
each arrived. Subjects as in docs/EVENTS.md, with the default prefix.
"""

import asyncio
import json
import time

import nats

PREFIX = "dom"


class Bus:
    """The driver's NATS connection: publishes MDB records and follows the
    state reports and desired states of every machine."""

    def __init__(self):
        self.nc = None
        self.reports = {}        # host -> (time, last report)
        self.first = {}          # host -> time of its first report since watched
        self.target = {}         # host -> image it is being moved to
        self.compliant = {}      # host -> (time, report) compliant with its target
        self.desired = {}        # host -> time its desired state let it move to its target
        self.changed = asyncio.Event()

    async def connect(self, url):
        self.nc = await nats.connect(url, max_reconnect_attempts=-1, name="e2e-bench")
        await self.nc.subscribe(f"{PREFIX}.state.>", cb=self._state)
        await self.nc.subscribe(f"{PREFIX}.desired.>", cb=self._desired)
        await self.nc.flush()

    async def close(self):
        if self.nc is not None:
            await self.nc.close()

    async def _state(self, msg):
        now = time.time()
        host = msg.subject[len(PREFIX) + len(".state."):]
        try:
            report = json.loads(msg.data)
        except ValueError:
            return
        self.reports[host] = (now, report)
        self.first.setdefault(host, now)
        image = self.target.get(host)
        if (image and host not in self.compliant and report.get("compliant")
                and report.get("image") == image and report.get("desired_image") == image):
            self.compliant[host] = (now, report)
        self.changed.set()

    async def _desired(self, msg):
        now = time.time()
        host = msg.subject[len(PREFIX) + len(".desired."):]
        try:
            state = json.loads(msg.data)
        except ValueError:
            return
        # A machine held for a free update slot is told its image with
        # updates not allowed; it is told to move when they are.
        image = state.get("image")
        if image and image == self.target.get(host) and state.get("updates_allowed", True):
            self.desired.setdefault(host, now)

    def expect(self, hosts, image):
        for h in hosts:
            self.target[h] = image
            self.compliant.pop(h, None)
            self.desired.pop(h, None)
        self.changed.set()

    def forget(self, hosts):
        for h in hosts:
            self.first.pop(h, None)
            self.reports.pop(h, None)

    async def until(self, done, deadline):
        """Waits until done() holds or the wall clock reaches deadline."""
        while True:
            if done():
                return True
            self.changed.clear()
            left = deadline - time.time()
            if left <= 0:
                return done()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                pass

    async def require(self, hosts, image):
        """Publishes one MDB record per host requiring `image`; returns the
        time of the first publish."""
        payload = json.dumps({"RequiredImage": image}).encode()
        start = time.time()
        for h in hosts:
            await self.nc.publish(f"{PREFIX}.mdb.{h}", payload)
        await self.nc.flush()
        return start
