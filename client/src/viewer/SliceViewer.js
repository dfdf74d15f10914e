// Three linked orthogonal slice views (axial, coronal, sagittal) rendered with vtk.js.
//
// The volume is in RAS voxel order (see volume/orient.js), so display axis 0 points to the
// patient's right, 1 anterior, 2 superior. Each view has a parallel camera that this class drives
// itself (no vtk interactor), which keeps the screen <-> voxel mapping for clicks, crosshairs and
// the tile overlay exact. Views follow the radiological convention (patient's right on the left).
import '@kitware/vtk.js/Rendering/OpenGL/Camera';
import '@kitware/vtk.js/Rendering/OpenGL/Renderer';
import '@kitware/vtk.js/Rendering/OpenGL/Texture';
import '@kitware/vtk.js/Rendering/OpenGL/ImageMapper';
import '@kitware/vtk.js/Rendering/OpenGL/ImageSlice';
import vtkOpenGLRenderWindow from '@kitware/vtk.js/Rendering/OpenGL/RenderWindow';
import vtkRenderWindow from '@kitware/vtk.js/Rendering/Core/RenderWindow';
import vtkRenderer from '@kitware/vtk.js/Rendering/Core/Renderer';
import vtkImageMapper from '@kitware/vtk.js/Rendering/Core/ImageMapper';
import vtkImageSlice from '@kitware/vtk.js/Rendering/Core/ImageSlice';
import vtkImageData from '@kitware/vtk.js/Common/DataModel/ImageData';
import vtkDataArray from '@kitware/vtk.js/Common/Core/DataArray';

const { SlicingMode } = vtkImageMapper;

// h/v: the volume axes along the screen's horizontal (pointing right) and vertical (pointing up).
export const VIEWS = [
  { name: 'axial', label: 'Axial', normal: 2, mode: SlicingMode.K, h: 0, hSign: -1, v: 1, vSign: 1 },
  { name: 'coronal', label: 'Coronal', normal: 1, mode: SlicingMode.J, h: 0, hSign: -1, v: 2, vSign: 1 },
  { name: 'sagittal', label: 'Sagittal', normal: 0, mode: SlicingMode.I, h: 1, hSign: -1, v: 2, vSign: 1 },
];

const AXIS_LETTERS = [['L', 'R'], ['P', 'A'], ['I', 'S']]; // [negative, positive] end of each axis

export const PRESETS = [
  { name: 'Auto (0.5–99.5 %)', lo: 0.5, hi: 99.5 },
  { name: 'Soft (0–99.9 %)', lo: 0, hi: 99.9 },
  { name: 'High contrast (10–95 %)', lo: 10, hi: 95 },
  { name: 'Dark detail (0–60 %)', lo: 0, hi: 60 },
  { name: 'Full range', full: true },
];

/** The letter of the patient direction a unit vector along (axis, sign) points to. */
export function directionLetter(axis, sign) {
  return AXIS_LETTERS[axis][sign > 0 ? 1 : 0];
}

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

export default class SliceViewer {
  constructor(el, { onCursor = () => {}, onRendered = () => {} } = {}) {
    this.el = el;
    this.onCursor = onCursor;
    this.onRendered = onRendered;
    this.volume = null;
    this.cursor = [0, 0, 0];
    this.window = 1;
    this.level = 0.5;
    this.presetIndex = 0;
    this.showCrosshair = true;
    this.tileMap = null;
    this.tileLayer = null;
    this.activeView = 0;
    this.frame = null;
    this.renderedOnce = false;
    el.classList.add('miqa-viewer');
    el.innerHTML = VIEWS.map((v) => `
      <div class="miqa-view" data-view="${v.name}" tabindex="-1">
        <div class="miqa-view-gl"></div>
        <canvas class="miqa-view-overlay"></canvas>
        <div class="miqa-view-title">${v.label} <span class="miqa-view-slice"></span></div>
        <div class="miqa-orient miqa-orient-left"></div>
        <div class="miqa-orient miqa-orient-right"></div>
        <div class="miqa-orient miqa-orient-top"></div>
        <div class="miqa-orient miqa-orient-bottom"></div>
      </div>`).join('') + `
      <div class="miqa-view-info">
        <div><b>Click/drag</b> crosshairs · <b>wheel/↑↓</b> slice · <b>right-drag</b> window/level</div>
        <div><b>Ctrl+wheel</b> zoom · <b>middle/Ctrl-drag</b> pan · <b>R</b> reset · <b>?</b> all shortcuts</div>
      </div>`;
    this.views = VIEWS.map((config, index) => this._createView(config, index));
    this.resizeObserver = new ResizeObserver(() => this._resize());
    this.resizeObserver.observe(el);
    this.views.forEach((view) => this.resizeObserver.observe(view.el));
    this._resize();
  }

  _createView(config, index) {
    const el = this.el.querySelector(`[data-view="${config.name}"]`);
    const renderWindow = vtkRenderWindow.newInstance();
    const renderer = vtkRenderer.newInstance({ background: [0, 0, 0] });
    renderWindow.addRenderer(renderer);
    const glWindow = vtkOpenGLRenderWindow.newInstance();
    glWindow.setContainer(el.querySelector('.miqa-view-gl'));
    renderWindow.addView(glWindow);
    const mapper = vtkImageMapper.newInstance();
    mapper.setSlicingMode(config.mode);
    const actor = vtkImageSlice.newInstance();
    actor.setMapper(mapper);
    actor.getProperty().setInterpolationTypeToLinear();
    const camera = renderer.getActiveCamera();
    camera.setParallelProjection(true);
    const view = {
      ...config, index, el, renderWindow, renderer, glWindow, mapper, actor, camera,
      overlay: el.querySelector('.miqa-view-overlay'),
      sliceLabel: el.querySelector('.miqa-view-slice'),
      zoom: 1,
      pan: [0, 0],
      width: 1,
      height: 1,
      dirty: true,
    };
    // Orientation labels follow from the screen axes (right = +h*hSign, up = +v*vSign).
    el.querySelector('.miqa-orient-right').textContent = directionLetter(config.h, config.hSign);
    el.querySelector('.miqa-orient-left').textContent = directionLetter(config.h, -config.hSign);
    el.querySelector('.miqa-orient-top').textContent = directionLetter(config.v, config.vSign);
    el.querySelector('.miqa-orient-bottom').textContent = directionLetter(config.v, -config.vSign);
    this._bindMouse(view);
    return view;
  }

  // -- data -------------------------------------------------------------------------------------
  setVolume(volume) {
    this.volume = volume;
    const image = vtkImageData.newInstance();
    image.setDimensions(...volume.dims);
    image.setSpacing(...volume.spacing);
    image.setOrigin(0, 0, 0);
    image.getPointData().setScalars(vtkDataArray.newInstance({
      name: 'scalars', numberOfComponents: 1, values: volume.data,
    }));
    this.image = image;
    this.views.forEach((view) => {
      view.mapper.setInputData(image);
      if (!view.renderer.getActors().length) {
        view.renderer.addActor(view.actor);
      }
      view.zoom = 1;
      view.pan = [0, 0];
      view.dirty = true;
    });
    this.cursor = volume.dims.map((d) => Math.floor(d / 2));
    this.tileMap = null;
    this.renderedOnce = false;
    this.el.dataset.rendered = 'false';
    this.applyPreset(0);
    this.onCursor(this.cursor.slice());
  }

  setTileOverlay(tileMap, layer) {
    this.tileMap = tileMap || null;
    this.tileLayer = tileMap ? layer : null;
    this._drawOverlays();
  }

  // -- window / level ---------------------------------------------------------------------------
  applyPreset(index) {
    if (!this.volume) return;
    this.presetIndex = ((index % PRESETS.length) + PRESETS.length) % PRESETS.length;
    const preset = PRESETS[this.presetIndex];
    const { stats } = this.volume;
    let lo = preset.full ? stats.min : stats.pct(preset.lo);
    let hi = preset.full ? stats.max : stats.pct(preset.hi);
    if (!(hi > lo)) {
      lo = stats.min;
      hi = stats.max > stats.min ? stats.max : stats.min + 1;
    }
    this.setWindowLevel(hi - lo, (hi + lo) / 2);
  }

  nextPreset() {
    this.applyPreset(this.presetIndex + 1);
  }

  setWindowLevel(window, level) {
    this.window = Math.max(window, 1e-6);
    this.level = level;
    this.views.forEach((view) => {
      view.actor.getProperty().setColorWindow(this.window);
      view.actor.getProperty().setColorLevel(this.level);
      view.dirty = true;
    });
    this.el.dispatchEvent(new CustomEvent('miqa:windowlevel', { detail: { window: this.window, level: this.level } }));
    this.requestRender();
  }

  // -- cursor / slices --------------------------------------------------------------------------
  setCursor(ijk) {
    if (!this.volume) return;
    const next = ijk.map((v, a) => clamp(Math.round(v), 0, this.volume.dims[a] - 1));
    this.views.forEach((view) => {
      if (next[view.normal] !== this.cursor[view.normal]) {
        view.dirty = true;
      }
    });
    this.cursor = next;
    this.onCursor(next.slice());
    this.requestRender();
  }

  moveSlice(viewIndex, delta) {
    const view = this.views[viewIndex ?? this.activeView];
    const next = this.cursor.slice();
    next[view.normal] += delta;
    this.setCursor(next);
  }

  /** The cursor as a location of interest: file voxel indices and world (RAS mm). */
  location() {
    if (!this.volume) return null;
    return { ijk: this.volume.toFileIjk(this.cursor), world: this.volume.toWorld(this.cursor).map((v) => Math.round(v * 100) / 100) };
  }

  zoomBy(factor, viewIndex = null) {
    const targets = viewIndex === null ? this.views : [this.views[viewIndex]];
    targets.forEach((view) => {
      view.zoom = clamp(view.zoom * factor, 0.25, 40);
      view.dirty = true;
    });
    this.requestRender();
  }

  resetView() {
    this.views.forEach((view) => {
      view.zoom = 1;
      view.pan = [0, 0];
      view.dirty = true;
    });
    if (this.volume) {
      this.cursor = this.volume.dims.map((d) => Math.floor(d / 2));
      this.onCursor(this.cursor.slice());
    }
    this.applyPreset(0);
  }

  toggleCrosshair(show = !this.showCrosshair) {
    this.showCrosshair = show;
    this._drawOverlays();
  }

  // -- geometry ---------------------------------------------------------------------------------
  _scale(view) {
    const { dims, spacing } = this.volume;
    const extH = dims[view.h] * spacing[view.h];
    const extV = dims[view.v] * spacing[view.v];
    const aspect = view.width / view.height;
    const fit = Math.max(extV / 2, extH / 2 / aspect) * 1.04;
    return fit / view.zoom;
  }

  _focal(view) {
    const { dims, spacing } = this.volume;
    const fp = [0, 1, 2].map((a) => ((dims[a] - 1) / 2) * spacing[a]);
    fp[view.h] += view.pan[0];
    fp[view.v] += view.pan[1];
    fp[view.normal] = this.cursor[view.normal] * spacing[view.normal];
    return fp;
  }

  _pxPerMm(view) {
    return view.height / (2 * this._scale(view));
  }

  /** Screen (CSS px in the view) -> continuous voxel coordinates in the view's plane. */
  _screenToVoxel(view, x, y) {
    const { spacing } = this.volume;
    const fp = this._focal(view);
    const ppm = this._pxPerMm(view);
    const ijk = this.cursor.slice();
    ijk[view.h] = (fp[view.h] + (view.hSign * (x - view.width / 2)) / ppm) / spacing[view.h];
    ijk[view.v] = (fp[view.v] + (view.vSign * (view.height / 2 - y)) / ppm) / spacing[view.v];
    return ijk;
  }

  /** Voxel coordinate along the view's horizontal / vertical axis -> screen x / y. */
  _voxelToScreen(view, i, j) {
    const { spacing } = this.volume;
    const fp = this._focal(view);
    const ppm = this._pxPerMm(view);
    return [
      view.width / 2 + view.hSign * (i * spacing[view.h] - fp[view.h]) * ppm,
      view.height / 2 - view.vSign * (j * spacing[view.v] - fp[view.v]) * ppm,
    ];
  }

  _updateCamera(view) {
    const fp = this._focal(view);
    const right = [0, 0, 0];
    const up = [0, 0, 0];
    right[view.h] = view.hSign;
    up[view.v] = view.vSign;
    // direction of projection = up x right (so that right = dop x up, as vtk's camera has it)
    const dop = [
      up[1] * right[2] - up[2] * right[1],
      up[2] * right[0] - up[0] * right[2],
      up[0] * right[1] - up[1] * right[0],
    ];
    const { dims, spacing } = this.volume;
    const dist = Math.max(...dims.map((d, a) => d * spacing[a])) * 2 + 10;
    view.camera.setFocalPoint(...fp);
    view.camera.setPosition(fp[0] - dop[0] * dist, fp[1] - dop[1] * dist, fp[2] - dop[2] * dist);
    view.camera.setViewUp(...up);
    view.camera.setParallelScale(this._scale(view));
    view.camera.setClippingRange(dist * 0.5, dist * 1.5);
    view.mapper.setSlice(this.cursor[view.normal]);
  }

  // -- rendering --------------------------------------------------------------------------------
  _resize() {
    const dpr = window.devicePixelRatio || 1;
    // Three views in a row on wide hosts, otherwise a 2x2 grid (the fourth cell: mouse help).
    const host = this.el.getBoundingClientRect();
    const row = host.width > 2.2 * host.height;
    if (row !== this.el.classList.contains('miqa-layout-row')) {
      this.el.classList.toggle('miqa-layout-row', row);
      this.el.classList.toggle('miqa-layout-grid', !row);
    }
    this.views.forEach((view) => {
      const rect = view.el.getBoundingClientRect();
      const w = Math.max(1, Math.floor(rect.width));
      const h = Math.max(1, Math.floor(rect.height));
      if (w === view.width && h === view.height) return;
      view.width = w;
      view.height = h;
      view.glWindow.setSize(Math.floor(w * dpr), Math.floor(h * dpr));
      view.overlay.width = Math.floor(w * dpr);
      view.overlay.height = Math.floor(h * dpr);
      view.dirty = true;
    });
    this.requestRender();
  }

  requestRender() {
    if (this.frame === null) {
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        this.renderNow();
      });
    }
  }

  renderNow() {
    if (!this.volume) return;
    this.views.forEach((view) => {
      if (view.dirty) {
        this._updateCamera(view);
        view.renderWindow.render();
        view.dirty = false;
      }
      view.sliceLabel.textContent = `${this.cursor[view.normal] + 1} / ${this.volume.dims[view.normal]}`;
    });
    this._drawOverlays();
    if (!this.renderedOnce) {
      this.renderedOnce = true;
      this.el.dataset.rendered = 'true';
      this.onRendered();
    }
  }

  _drawOverlays() {
    if (!this.volume) return;
    const dpr = window.devicePixelRatio || 1;
    this.views.forEach((view) => {
      const ctx = view.overlay.getContext('2d');
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, view.width, view.height);
      if (this.tileMap && this.tileLayer) {
        this._drawTiles(view, ctx);
      }
      if (this.showCrosshair) {
        const [x, y] = this._voxelToScreen(view, this.cursor[view.h], this.cursor[view.v]);
        ctx.strokeStyle = 'rgba(255, 200, 0, 0.85)';
        ctx.lineWidth = 1;
        ctx.beginPath();
        ctx.moveTo(0, Math.round(y) + 0.5);
        ctx.lineTo(view.width, Math.round(y) + 0.5);
        ctx.moveTo(Math.round(x) + 0.5, 0);
        ctx.lineTo(Math.round(x) + 0.5, view.height);
        ctx.stroke();
      }
    });
  }

  /** Tiles of the assessment's map that cut this view's slice, shaded by the chosen layer. */
  _drawTiles(view, ctx) {
    const map = this.tileMap;
    const size = map.tileSize || 64;
    const values = this.tileLayer === 'quality' ? map.quality : (map.artifacts || {})[this.tileLayer];
    if (!values || !map.starts) return;
    const slice = this.cursor[view.normal];
    const { dims } = this.volume;
    map.starts.forEach((start, t) => {
      if (slice < start[view.normal] || slice >= start[view.normal] + size) return;
      let value = values[t];
      if (typeof value !== 'number') return;
      if (this.tileLayer === 'quality') {
        value = 1 - clamp(value / 10, 0, 1); // low quality: strong colour
      }
      value = clamp(value, 0, 1);
      const i0 = start[view.h] - 0.5;
      const i1 = Math.min(start[view.h] + size, dims[view.h]) - 0.5;
      const j0 = start[view.v] - 0.5;
      const j1 = Math.min(start[view.v] + size, dims[view.v]) - 0.5;
      const [xa, ya] = this._voxelToScreen(view, i0, j0);
      const [xb, yb] = this._voxelToScreen(view, i1, j1);
      const x = Math.min(xa, xb);
      const y = Math.min(ya, yb);
      const w = Math.abs(xb - xa);
      const h = Math.abs(yb - ya);
      ctx.fillStyle = `rgba(255, 40, 40, ${(0.55 * value).toFixed(3)})`;
      ctx.fillRect(x, y, w, h);
      ctx.strokeStyle = 'rgba(255, 255, 255, 0.25)';
      ctx.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
      if (w > 34 && h > 16) {
        ctx.fillStyle = 'rgba(255, 255, 255, 0.85)';
        ctx.font = '11px sans-serif';
        const text = this.tileLayer === 'quality' ? values[t].toFixed(1) : values[t].toFixed(2);
        ctx.fillText(text, x + 3, y + 12);
      }
    });
  }

  // -- mouse ------------------------------------------------------------------------------------
  _bindMouse(view) {
    const el = view.el;
    const point = (e) => {
      const rect = el.getBoundingClientRect();
      return [e.clientX - rect.left, e.clientY - rect.top];
    };
    el.addEventListener('contextmenu', (e) => e.preventDefault());
    el.addEventListener('mouseenter', () => {
      this.activeView = view.index;
    });
    el.addEventListener('mousedown', (e) => {
      if (!this.volume) return;
      e.preventDefault();
      this.activeView = view.index;
      const [x0, y0] = point(e);
      let mode = 'cursor';
      if (e.button === 2 || (e.button === 0 && e.shiftKey)) mode = 'windowlevel';
      else if (e.button === 1 || (e.button === 0 && (e.ctrlKey || e.metaKey || e.altKey))) mode = 'pan';
      const start = { window: this.window, level: this.level, pan: view.pan.slice(), x: x0, y: y0 };
      const range = Math.max(this.volume.stats.max - this.volume.stats.min, 1e-6);
      const apply = (x, y) => {
        if (mode === 'cursor') {
          this.setCursor(this._screenToVoxel(view, x, y));
        } else if (mode === 'windowlevel') {
          const k = range / 600;
          this.setWindowLevel(start.window + (x - start.x) * k, start.level - (y - start.y) * k);
        } else {
          const ppm = this._pxPerMm(view);
          view.pan = [start.pan[0] - (view.hSign * (x - start.x)) / ppm, start.pan[1] + (view.vSign * (y - start.y)) / ppm];
          view.dirty = true;
          this.requestRender();
        }
      };
      apply(x0, y0);
      const move = (ev) => apply(...point(ev));
      const up = () => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
    el.addEventListener('wheel', (e) => {
      if (!this.volume) return;
      e.preventDefault();
      this.activeView = view.index;
      const sign = e.deltaY > 0 ? -1 : 1;
      if (e.ctrlKey || e.metaKey) {
        this.zoomBy(sign > 0 ? 1.15 : 1 / 1.15, view.index);
      } else {
        this.moveSlice(view.index, sign);
      }
    }, { passive: false });
  }

  destroy() {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
    this.resizeObserver.disconnect();
    this.views.forEach((view) => {
      view.actor.delete();
      view.mapper.delete();
      view.renderer.delete();
      view.glWindow.delete();
      view.renderWindow.delete();
    });
    this.views = [];
    this.el.innerHTML = '';
  }
}
